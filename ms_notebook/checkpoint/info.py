"""What the index knows about one named value, without its bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, unsafe_hash=True)
class TensorInfo:
    """One entry of a checkpoint (read-only by convention: not ``frozen``, whose checks make building a
    million of them several times slower; hashable and compared by value all the same).

    ``dtype`` is MindSpore's type name as written in the file (``"Float32"``, ``"BFloat16"``, ``"str"``),
    which is also ``str(parameter.dtype)`` of the network parameter it came from. ``group`` is ``"weights"``,
    ``"optimizer"`` or ``"extra"``; ``kind`` is ``"tensor"``, ``"str"`` or ``"maptensor"``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int
    group: str
    kind: str = "tensor"
    _raw: Any = field(default=None, compare=False, repr=False)  # where the index reads it from

    @property
    def ndim(self) -> int:
        return len(self.shape)
