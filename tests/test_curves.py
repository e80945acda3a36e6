"""LiveCurves as a plain MindSpore callback: history, CSV, JSON Lines, follow(), overlays and the figure."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import textwrap

import mindspore as ms
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from mindspore import nn
from mindspore.train import Model

from ms_notebook.runs.curves import LiveCurves, follow
from ms_notebook.runs.history import History, read_jsonl
from ms_notebook.runs.plotting import ema, render_png
from tests.digits_data import digits

pytestmark = pytest.mark.slow


def digits_dataset(count: int = 128, batch: int = 32):
    return digits(0, count, batch)()


def train_with(curves: LiveCurves, epochs: int = 2, eval_data: bool = True) -> Model:
    ms.set_seed(0)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 16), nn.ReLU(), nn.Dense(16, 10))
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Adam(net.trainable_params(), 0.01), metrics={"accuracy", "loss"})
    if eval_data:
        model.fit(epochs, digits_dataset(), valid_dataset=digits_dataset(64), callbacks=[curves])
    else:
        model.train(epochs, digits_dataset(), callbacks=[curves])
    return model


def test_plain_model_train_records_one_row_per_step():
    curves = LiveCurves(display=False)
    train_with(curves, epochs=2, eval_data=False)
    history = curves.history
    assert len(history) == 8
    assert history["step"].tolist() == list(range(1, 9))
    assert all(math.isfinite(x) for x in history["loss"])
    assert (history["steps_per_s"] > 0).all()
    # the epoch mean of the step losses lands on each epoch's last row
    first_epoch = history[history["epoch"] == 1]
    assert first_epoch["train_loss"].iloc[-1] == pytest.approx(first_epoch["loss"].mean())
    assert first_epoch["train_loss"].iloc[:-1].isna().all()


def test_fit_records_eval_metrics_per_epoch_and_a_second_train_continues():
    curves = LiveCurves(display=False)
    model = train_with(curves, epochs=2)
    epochs = curves.epochs
    assert epochs["epoch"].tolist() == [1, 2]
    assert epochs["eval_accuracy"].iloc[-1] == pytest.approx(model.eval(digits_dataset(64))["accuracy"])
    # the eval loss over the whole eval set, not Model.fit's "eval_loss" (its last batch only)
    assert epochs["eval_loss"].iloc[-1] == pytest.approx(model.eval(digits_dataset(64))["loss"])
    model.train(1, digits_dataset(), callbacks=[curves])
    assert curves.history["step"].tolist() == list(range(1, 13))
    assert curves.history["epoch"].iloc[-1] == 3


def test_to_csv_round_trips_the_history(tmp_path):
    curves = LiveCurves(display=False)
    train_with(curves, epochs=1)
    path = curves.to_csv(tmp_path / "run.csv")
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, curves.history, check_dtype=False)


def test_log_path_writes_json_lines_that_rebuild_the_same_history(tmp_path):
    log = tmp_path / "metrics.jsonl"
    curves = LiveCurves(display=False, log_path=log)
    train_with(curves, epochs=2)
    records = read_jsonl(log)
    assert records[0]["type"] == "begin"
    assert records[-1]["type"] == "end"
    assert sum(r["type"] == "step" for r in records) == 8
    rebuilt = History.from_records(records).frame()
    pd.testing.assert_frame_equal(rebuilt, curves.history)


def test_follow_tails_a_run_written_by_another_process(tmp_path):
    log = tmp_path / "job.jsonl"
    script = textwrap.dedent(f"""
        import json, time
        with open({str(log)!r}, "w") as f:
            f.write(json.dumps({{"type": "begin", "label": "job"}}) + "\\n"); f.flush()
            for step in range(1, 31):
                f.write(json.dumps({{"type": "step", "epoch": 1, "step": step, "loss": 1.0 / step}}) + "\\n")
                f.flush(); time.sleep(0.02)
            f.write(json.dumps({{"type": "epoch", "epoch": 1, "step": 30, "eval_accuracy": 0.9}}) + "\\n")
            f.write(json.dumps({{"type": "end"}}) + "\\n")
    """)
    writer = subprocess.Popen([sys.executable, "-c", script])
    follower = follow(log, timeout=30, poll_s=0.05, display=False)
    assert follower.wait(timeout=60) == "end"
    writer.wait(timeout=30)
    history = follower.history
    assert history["step"].tolist() == list(range(1, 31))
    assert history["eval_accuracy"].dropna().tolist() == [0.9]


def test_follow_gives_up_after_the_timeout_and_can_be_stopped(tmp_path):
    log = tmp_path / "silent.jsonl"
    log.write_text(json.dumps({"type": "step", "epoch": 1, "step": 1, "loss": 2.0}) + "\n")
    follower = follow(log, timeout=0.3, poll_s=0.05, display=False)
    assert follower.wait(timeout=10) == "timeout"
    assert len(follower.history) == 1
    stopped = follow(log, timeout=60, poll_s=0.05, display=False)
    stopped.stop()
    assert stopped.wait(timeout=10) == "stopped"


def test_overlays_accept_earlier_runs_in_every_form(tmp_path):
    first = LiveCurves(label="frozen backbone", display=False, log_path=tmp_path / "a.jsonl")
    train_with(first, epochs=1)
    first.to_csv(tmp_path / "a.csv")
    second = LiveCurves(label="all unfrozen", overlays=[first, tmp_path / "a.csv", tmp_path / "a.jsonl"],
                        display=False)
    # a JSON-lines log carries its run label; a CSV is named after the file
    assert [o.label for o in second.overlays] == ["frozen backbone", "a", "frozen backbone"]
    for overlay in second.overlays:
        assert overlay.frame()["loss"].tolist() == pytest.approx(first.history["loss"].tolist())
    second.new_run("third")
    assert second.history_obj.label == "third" and len(second.history) == 0
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        LiveCurves(overlays=[tmp_path / "missing.csv"], display=False)


def test_figure_is_a_png_and_changes_with_smoothing_and_log_scale():
    curves = LiveCurves(display=False)
    train_with(curves, epochs=2)
    raw = curves.figure_png()
    image = imread(io.BytesIO(raw), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 300
    curves.set_style(smoothing=0.0)
    assert curves.figure_png() != raw
    curves.set_style(log_y=True)
    assert curves.log_y and curves.figure_png() != raw
    with pytest.raises(ValueError, match="smoothing"):
        curves.set_style(smoothing=1.0)


def test_ema_is_bias_corrected():
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    values = ema([1.0, 3.0], 0.5)
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx((0.25 * 1.0 + 0.5 * 3.0) / 0.75)
    assert math.isnan(ema([float("nan")], 0.5)[0])


def test_empty_history_still_renders():
    assert render_png(History("nothing yet"))[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_chart_gets_every_step_at_the_throttled_rate_and_a_png_ends_the_run():
    curves = LiveCurves(label="digits", display=True, max_redraws_per_s=1e-3)  # steps never due: only forced
    chart = curves.view.widget()
    train_with(curves, epochs=2)
    steps, losses = chart.values()
    assert steps.tolist() == curves.history["step"].astype(float).tolist() == [float(s) for s in range(1, 9)]
    np.testing.assert_allclose(losses, curves.history["loss"].to_numpy(np.float32), rtol=1e-6)
    assert [e["epoch"] for e in chart.epochs] == [1, 2] and all("eval_accuracy" in e for e in chart.epochs)
    assert chart.label == "digits" and chart.live is False
    # begin, start, two epoch ends, end and finish are pushed; none of the 8 steps was due
    assert curves.view.push_count <= 6
    assert curves.view.draw_count == 1 and curves.view.last_png[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_style_controls_and_set_style_agree():
    curves = LiveCurves(display=True)
    chart = curves.view.widget()
    chart.smoothing = 0.3  # what the view's slider does
    chart.log_y = True
    assert curves.smoothing == 0.3 and curves.log_y is True
    curves.set_style(smoothing=0.0, log_y=False)
    assert chart.smoothing == 0.0 and chart.log_y is False
    with pytest.raises(Exception, match="smoothing"):
        chart.smoothing = 1.0
    assert curves.smoothing == 0.0


def test_new_run_moves_the_finished_run_into_the_charts_overlays():
    curves = LiveCurves(label="frozen", display=True)
    chart = curves.view.widget()
    train_with(curves, epochs=1)
    curves.new_run("unfrozen")
    assert [o["label"] for o in chart.overlays] == ["frozen"]
    assert chart.overlays[0]["steps"] == [1.0, 2.0, 3.0, 4.0]
    assert chart.overlays[0]["epochs"][0]["eval_accuracy"] == pytest.approx(curves.overlays[0].epochs()
                                                                            ["eval_accuracy"].iloc[0])
    json.dumps(chart.overlays, allow_nan=False)  # the view gets plain JSON: no NaN
    assert chart.label == "unfrozen" and len(chart.values()[0]) == 0 and chart.epochs == []
