"""The final curve figure is made to be read: legend outside the data, labelled axes, round log ticks, 2x."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.image import imread

from ms_notebook.runs.history import History
from ms_notebook.runs.plotting import CSS_WIDTH, DENSITY, draw, log_ticks, render_png


def run(label: str, steps: int, speed: float, per_epoch: int = 20) -> History:
    """A run that learns at ``speed``: loss per step, eval loss and accuracy per epoch."""
    history = History(label)
    rng = np.random.default_rng(0)
    for step in range(1, steps + 1):
        loss = 2 * math.exp(-step / speed) + 0.05 * rng.random()
        history.apply({"type": "step", "epoch": 1 + (step - 1) // per_epoch, "step": step, "loss": loss})
        if step % per_epoch == 0:
            decay = math.exp(-step / speed)
            history.apply({"type": "epoch", "epoch": step // per_epoch, "step": step,
                           "eval_accuracy": 1 - decay, "eval_loss": 1.5 * decay})
    return history


def plotted_points(figure) -> np.ndarray:
    """Every plotted data point of every panel, in figure pixels."""
    points = [line.get_transform().transform(line.get_xydata()) for axis in figure.axes for line in axis.lines
              if len(line.get_xydata())]
    return np.concatenate(points)


def test_the_legend_sits_above_the_panels_and_covers_no_plotted_point():
    figure = draw(run("all unfrozen", 300, 40), [run("frozen backbone", 300, 80)])
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    box = legend.get_window_extent(renderer)
    for axis in figure.axes:
        assert box.y0 >= axis.get_window_extent(renderer).y1  # above every panel: never over the data
    inside = [(x, y) for x, y in plotted_points(figure) if box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1]
    assert inside == []
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["frozen backbone (earlier)", "all unfrozen", "eval loss (per epoch)", "eval accuracy"]


def test_axes_are_labelled_and_the_epoch_panel_counts_epochs():
    figure = draw(run("all unfrozen", 300, 40))
    loss, metric = figure.axes
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("step (one batch)", "loss")
    assert (metric.get_xlabel(), metric.get_ylabel()) == ("epoch", "eval accuracy")
    epochs = [x for line in metric.lines for x in line.get_xdata()]
    assert sorted(set(epochs)) == list(range(1, 16))  # one point per epoch, at the epoch number


def test_log_scale_ticks_read_as_round_numbers():
    assert log_ticks(0.2, 5) == pytest.approx([0.3, 1, 3])
    assert log_ticks(0.01, 10) == pytest.approx([0.01, 0.1, 1, 10])
    assert log_ticks(0.25, 0.6) == pytest.approx([0.3, 0.4, 0.5, 0.6])
    assert log_ticks(0.4, 0.5) == pytest.approx([0.4, 0.42, 0.44, 0.46, 0.48, 0.5])
    figure = draw(run("all unfrozen", 300, 40), log_y=True)
    shown = [tick.get_text() for tick in figure.axes[0].get_yticklabels() if tick.get_text()]
    assert shown and all(float(text) == float(f"{float(text):.1g}") for text in shown), shown  # 0.1, 0.3, 1


def test_the_png_is_drawn_at_twice_its_css_width():
    png = render_png(run("all unfrozen", 60, 40))
    image = imread(io.BytesIO(png), format="png")
    assert image.shape[1] == CSS_WIDTH * DENSITY
    assert int.from_bytes(png[16:20], "big") == CSS_WIDTH * DENSITY
