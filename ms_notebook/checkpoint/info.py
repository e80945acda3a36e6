"""What the index knows about one named value, without its bytes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One entry of a checkpoint.

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

    @property
    def ndim(self) -> int:
        return len(self.shape)
