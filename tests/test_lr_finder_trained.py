"""The learning-rate finder on a network that has already learnt its task: a suggestion from at least
``MIN_STEPS`` real training steps, not "diverged" after two steps of batch noise; weights put back."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_find_lr_after_fifty_epochs_suggests_from_at_least_ten_steps():
    import mindspore as ms
    from mindspore import nn
    from mindspore.train import Model

    from ms_notebook.demo import DigitsNet, datasets
    from ms_notebook.runs.lr_finder import MIN_STEPS, find_lr

    ms.set_context(mode=ms.GRAPH_MODE)
    net = DigitsNet(5, seed=1)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.02, momentum=0.9)
    model = Model(net, loss, optimizer)
    train, _ = datasets("transfer", batch_size=16)
    model.train(50, train(), dataset_sink_mode=False)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    result = find_lr(model, net, optimizer, train, start_lr=1e-6, end_lr=10.0, steps=50)
    assert result.steps >= MIN_STEPS and result.suggestion is not None, result.summary()
    assert 1e-6 <= result.suggestion <= 10.0
    assert min(result.losses) < 0.05  # it really is a trained network: the loss is near zero
    assert all(np.array_equal(p.asnumpy(), before[p.name]) for p in net.get_parameters())
    assert "suggested learning rate" in result.summary()
    png = result.figure_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_labels_are_plain_numbers_without_an_offset():
    """Losses near zero that barely move: the y axis reads 0.0052-style labels, never "1e-10 + 5.18e-3"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ms_notebook.runs.lr_finder import LRFinderResult, ramp

    lrs = ramp(1e-6, 10.0, 30)
    losses = [5.182516e-3 + 1e-10 * (i % 3) for i in range(30)]
    result = LRFinderResult(lrs, losses, losses, 1e-3, 1e-2, "end of ramp", 30, 0.1, planned_steps=30)
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = result.plot(fig.add_subplot(1, 1, 1))
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all("e" not in label.lower() and "+" not in label for label in labels), labels
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert all(float(label.replace("\u2212", "-")) >= 0 for label in labels)
