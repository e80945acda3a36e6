"""What ``TransferPlan.apply()`` is about to change, recorded first so a failure can put everything back.

Recorded: the values of the parameters it will load, every parameter's ``requires_grad`` and freeze mark, and
every BatchNorm cell's ``use_batch_statistics`` and saved-setting mark. Only the values that will be
overwritten are copied, so a large network is not duplicated in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MISSING = object()


class Undo:
    """Restorable record of a network's parameter values (the ones named), flags and marks."""

    def __init__(self, params: dict[str, Any], values_of: Iterable[str], bn_cells: list[tuple[str, Any]],
                 marks: tuple[str, ...], bn_marks: tuple[str, ...]) -> None:
        self.params = params
        self.values = {name: params[name].data.copy() for name in values_of}
        self.flags = {
            name: (bool(p.requires_grad), {m: getattr(p, m, _MISSING) for m in marks})
            for name, p in params.items()
        }
        self.bn = [
            (cell, cell.use_batch_statistics, {m: getattr(cell, m, _MISSING) for m in bn_marks})
            for _, cell in bn_cells
        ]

    def restore(self) -> None:
        """Put every recorded value, flag and mark back."""
        for name, value in self.values.items():
            self.params[name].set_data(value)
        for name, (grad, marks) in self.flags.items():
            param = self.params[name]
            param.requires_grad = grad
            _put_marks(param, marks)
        for cell, stats, marks in self.bn:
            cell.use_batch_statistics = stats
            _put_marks(cell, marks)


def _put_marks(obj: Any, marks: dict[str, Any]) -> None:
    for mark, value in marks.items():
        if value is _MISSING:
            if hasattr(obj, mark):
                delattr(obj, mark)
        else:
            setattr(obj, mark, value)
