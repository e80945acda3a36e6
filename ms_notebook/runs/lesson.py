"""MindSpore glue for lessons run from widgets: default loss and optimizer, a network snapshot to restore.

Kept out of ``ms_notebook.widgets`` because it touches MindSpore objects; the Studio only calls it.
"""

from __future__ import annotations

from typing import Any


def default_optimizer(params: list[Any]) -> Any:
    """Momentum(lr=0.02, momentum=0.9) over ``params``: the Studio's optimizer unless one is given."""
    from mindspore import nn

    return nn.Momentum(params, learning_rate=0.02, momentum=0.9)


def default_loss() -> Any:
    """Softmax cross-entropy on integer labels, averaged over the batch."""
    from mindspore import nn

    return nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")


class NetworkSnapshot:
    """Values, ``requires_grad`` flags and BatchNorm ``use_batch_statistics`` of a network, for restoring."""

    def __init__(self, net: Any) -> None:
        from mindspore.nn.layer.normalization import _BatchNorm

        self.net = net
        self.values = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
        self.requires_grad = {p.name: bool(p.requires_grad) for p in net.get_parameters()}
        self.batch_statistics = {
            name: cell.use_batch_statistics
            for name, cell in net.cells_and_names()
            if isinstance(cell, _BatchNorm)
        }

    def restore(self) -> None:
        """Put every parameter value and flag back as it was when the snapshot was taken."""
        from mindspore import Tensor

        cells = dict(self.net.cells_and_names())
        for param in self.net.get_parameters():
            param.set_data(Tensor(self.values[param.name].copy(), param.dtype))
            param.requires_grad = self.requires_grad[param.name]
        for name, value in self.batch_statistics.items():
            cells[name].use_batch_statistics = value
