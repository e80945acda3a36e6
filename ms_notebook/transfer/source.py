"""Where a transfer plan reads tensors from: a checkpoint file (through the index) or a dict.

Both look the same to the plan: ``shapes()`` (name -> shape, known without reading any tensor) and
``tensor(name)`` which reads exactly one tensor. A file is read through ``ms_notebook.checkpoint`` so only the
selected tensors'
bytes are ever touched, unlike ``mindspore.load_checkpoint`` which reads the whole file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class CheckpointSource:
    """Uniform read access to the checkpoint a plan transfers from."""

    def __init__(self, checkpoint: Any) -> None:
        self.path: str | None = None
        self.format: str | None = None  # "ckpt" or "safetensors" for a file; None for a dict
        self._dict: Mapping[str, Any] | None = None
        self._ck: Any = None
        if isinstance(checkpoint, str | os.PathLike):
            from ms_notebook.checkpoint import open_checkpoint

            self._ck = open_checkpoint(Path(checkpoint))
            self.path = str(checkpoint)
            self.format = getattr(self._ck, "format", None)
        elif isinstance(checkpoint, Mapping):
            self._dict = checkpoint
        elif hasattr(checkpoint, "entries") and hasattr(checkpoint, "__getitem__"):
            self._ck = checkpoint
            path = getattr(checkpoint, "path", None)
            self.path = str(path) if path is not None else None
            self.format = getattr(checkpoint, "format", None)
        else:
            raise TypeError(
                "checkpoint must be a path, an ms_notebook Checkpoint or a dict from "
                "mindspore.load_checkpoint, "
                f"got {type(checkpoint).__name__}"
            )

    @property
    def is_dict(self) -> bool:
        return self._dict is not None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor in the checkpoint (strings and maptensors left out)."""
        if self._dict is not None:
            out = {}
            for name, value in self._dict.items():
                shape = getattr(value, "shape", None)
                if shape is not None:
                    out[name] = tuple(int(d) for d in shape)
            return out
        out = {}
        for info in self._ck.entries:
            shape = getattr(info, "shape", None)
            if shape is None or str(getattr(info, "dtype", "")).lower() in ("str", "string"):
                continue
            out[info.name] = tuple(int(d) for d in shape)
        return out

    def weight_names(self) -> list[str]:
        """Names of the network weights in the checkpoint: optimizer state and appended values left out."""
        if self._dict is None:
            return [e.name for e in self._ck.entries if getattr(e, "group", "weights") == "weights"]
        from ms_notebook.checkpoint.groups import WEIGHTS, classify

        shapes = self.shapes()  # the same grouping as the index: state is known by its relation to weights
        names = list(shapes)
        groups = classify(names, ["tensor"] * len(names), [shapes[n] for n in names])
        return [n for n, group in zip(names, groups, strict=True) if group == WEIGHTS]

    def tensor(self, name: str):
        """Read one tensor as a ``mindspore.Tensor`` in the dtype it was saved with (bfloat16 included)."""
        from mindspore import Tensor

        if self._dict is not None:
            value = self._dict[name]
            data = getattr(value, "data", value)
            return data if isinstance(data, Tensor) else Tensor(data)
        return Tensor(self._ck[name])
