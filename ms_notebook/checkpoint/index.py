"""``open_checkpoint`` and ``Checkpoint``: a checkpoint file's index, with values read only on demand."""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import reader
from .dtypes import STRING, numpy_dtype
from .errors import CheckpointError
from .formats import RawEntry, RawIndex
from .formats import ckpt as ckpt_format
from .formats import safetensors as st_format
from .groups import WEIGHTS, classify
from .info import TensorInfo
from .stats import TensorStats, compute_histogram, compute_stats
from .tree import Node, build_tree, format_size, render

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("ckpt", "safetensors")


def open_checkpoint(path: str | os.PathLike[str], format: str | None = None) -> Checkpoint:
    """Index a MindSpore ``.ckpt`` or ``.safetensors`` file (format detected from its content).

    Only headers are read; tensor values are read when asked for.

    Raises FileNotFoundError for a missing file and CheckpointError for anything malformed or encrypted.
    """
    return Checkpoint(path, format=format)


def _detect(path: str, size: int) -> str:
    if size == 0:
        raise CheckpointError(path, "the file is empty")
    with open(path, "rb") as f:
        head = f.read(16)
    if st_format.detect(head, size):
        return "safetensors"
    kind = ckpt_format.detect(head)
    if kind is not None:
        return "ckpt"  # the ckpt reader explains encrypted files itself
    raise CheckpointError(
        path, "not a MindSpore checkpoint: neither a .ckpt protobuf nor a .safetensors file"
    )


class Checkpoint:
    """The index of one checkpoint file: names, shapes, dtypes and groups, with values read lazily.

    ``len``, ``iter`` (names in file order), ``in`` and ``ck[name]`` (a NumPy array, or ``str`` for string
    values) work like a read-only mapping. Nothing but the headers is read until a value is asked for.
    """

    def __init__(self, path: str | os.PathLike[str], format: str | None = None) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise CheckpointError(self.path, "is a directory, not a checkpoint file")
        st = os.stat(self.path)  # FileNotFoundError for a missing file
        self.file_size = st.st_size
        self._stamp = (st.st_size, st.st_mtime_ns)
        fmt = format or _detect(self.path, self.file_size)
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        raw: RawIndex = (ckpt_format if fmt == "ckpt" else st_format).read_index(self.path)
        self.format = raw.format
        self.metadata = raw.metadata
        self._raw = raw
        self._by_name: dict[str, RawEntry] = {e.name: e for e in raw.entries}
        self.entries: list[TensorInfo] = self._infos(raw.entries)
        self._info_by_name = {info.name: info for info in self.entries}
        self._tree: Node | None = None

    def _infos(self, raw: list[RawEntry]) -> list[TensorInfo]:
        groups = classify(
            [e.name for e in raw],
            [e.kind for e in raw],
            [len(e.shape) for e in raw],
            in_save_order=self.format == "ckpt",
        )
        infos = []
        for e, group in zip(raw, groups, strict=True):
            numel = 1
            for d in e.shape:
                numel *= d
            infos.append(TensorInfo(e.name, e.shape, e.ms_dtype, numel, e.nbytes, group, e.kind))
        return infos

    # mapping protocol ---
    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def keys(self) -> list[str]:
        return list(self._by_name)

    def info(self, name: str) -> TensorInfo:
        """The TensorInfo of one entry (KeyError when absent)."""
        return self._info_by_name[name]

    def __getitem__(self, name: str) -> np.ndarray | str:
        """Read one value: exactly its bytes, as a NumPy array (bfloat16 as ml_dtypes.bfloat16) or ``str``."""
        entry = self._by_name[name]
        self._check_unchanged()
        if entry.kind == "maptensor":
            raise CheckpointError(
                self.path, f"{name!r} is a MapParameter (maptensor); reading it is not supported"
            )
        if entry.kind == STRING:
            try:
                return reader.read_bytes(self.path, entry.spans).decode("utf-32-le").rstrip("\x00")
            except UnicodeDecodeError:
                raise CheckpointError(self.path, f"string {name!r} is not valid UTF-32 text") from None
        dtype = numpy_dtype(entry.ms_dtype)
        assert dtype is not None  # validated when indexing
        return reader.read_array(self.path, entry.spans, dtype, entry.shape)

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self._by_name:
            return default
        return self[name]

    # summaries ---
    @property
    def num_params(self) -> int:
        """Number of elements in the weights group (the model's parameters, not optimizer state)."""
        return sum(info.numel for info in self.entries if info.group == WEIGHTS)

    @property
    def has_crc(self) -> bool:
        """Whether the file carries a crc32 written by ``save_checkpoint(..., crc_check=True)``."""
        return self._raw.crc is not None or "crc_num" in self.metadata

    def tree(self, group: str | None = None) -> Node:
        """Nested nodes split on ``.`` with per-subtree totals; ``group`` keeps only that group's entries."""
        if group is not None:
            return build_tree(info for info in self.entries if info.group == group)
        if self._tree is None:
            self._tree = build_tree(self.entries)
        return self._tree

    def _numeric(self, name: str) -> tuple[RawEntry, np.dtype]:
        entry = self._by_name[name]
        dtype = numpy_dtype(entry.ms_dtype)
        if entry.kind != "tensor" or dtype is None:
            raise TypeError(f"{name!r} is a {entry.kind} value; statistics need a numeric tensor")
        self._check_unchanged()
        return entry, dtype

    def iter_chunks(self, name: str, chunk_elements: int = reader.CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
        """Yield a numeric tensor as flat arrays of at most ``chunk_elements`` elements, in file order.

        Memory stays bounded by one chunk; each array is a view of a reused buffer (copy it to keep it).
        """
        entry, dtype = self._numeric(name)
        return reader.iter_chunks(self.path, entry.spans, dtype, chunk_elements)

    def stats(self, name: str, chunk_elements: int = reader.CHUNK_ELEMENTS) -> TensorStats:
        """Mean, std, min, max, mean |x|, zero fraction, NaN and Inf counts, computed in bounded chunks."""
        entry, dtype = self._numeric(name)
        return compute_stats(reader.iter_chunks(self.path, entry.spans, dtype, chunk_elements))

    def histogram(
        self,
        name: str,
        bins: int = 50,
        range: tuple[float, float] | None = None,
        chunk_elements: int = reader.CHUNK_ELEMENTS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` of the finite values, like ``numpy.histogram``, computed in bounded chunks."""
        entry, dtype = self._numeric(name)
        if range is None:
            s = compute_stats(reader.iter_chunks(self.path, entry.spans, dtype, chunk_elements))
            range = (s.min, s.max)
        return compute_histogram(
            reader.iter_chunks(self.path, entry.spans, dtype, chunk_elements), bins, range
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per entry: name, group, dtype, shape, numel, nbytes."""
        import pandas as pd

        return pd.DataFrame(
            {
                "name": [i.name for i in self.entries],
                "group": [i.group for i in self.entries],
                "dtype": [i.dtype for i in self.entries],
                "shape": [i.shape for i in self.entries],
                "numel": [i.numel for i in self.entries],
                "nbytes": [i.nbytes for i in self.entries],
            }
        )

    def verify(self) -> None:
        """Check the crc32 MindSpore wrote with ``crc_check=True`` (reads the whole file, in chunks).

        Raises CheckpointError when the file has no crc or it does not match.
        """
        self._check_unchanged()
        if self.format == "ckpt":
            if self._raw.crc is None:
                raise CheckpointError(self.path, "the file has no crc (saved without crc_check=True)")
            crc = 0
            with open(self.path, "rb") as f:
                remaining = self._raw.crc_end
                while remaining:
                    block = f.read(min(remaining, 1 << 22))
                    if not block:
                        break
                    crc = binascii.crc32(block, crc)
                    remaining -= len(block)
            expected = self._raw.crc
        else:
            if "crc_num" not in self.metadata:
                raise CheckpointError(self.path, "the file has no crc (saved without crc_check=True)")
            crc = 0
            for name in sorted(self._by_name):
                entry = self._by_name[name]
                crc = binascii.crc32(name.encode(), crc)
                crc = self._safetensors_value_crc(entry, crc)
            try:
                expected = int(self.metadata["crc_num"])
            except ValueError:
                raise CheckpointError(self.path, "the crc in the metadata is not a number") from None
        if crc != expected:
            raise CheckpointError(
                self.path, f"crc mismatch: the file is damaged (stored {expected}, got {crc})"
            )

    def _safetensors_value_crc(self, entry: RawEntry, crc: int) -> int:
        """Continue ``crc`` over one value the way MindSpore does: ``crc32(bytes(array))``.

        For a 0-d integer array ``bytes(array)`` is ``bytes(int(array))``, i.e. that many zero bytes (a quirk
        of MindSpore's writer that its loader repeats), so we repeat it too.
        """
        dtype = numpy_dtype(entry.ms_dtype)
        if entry.shape == () and dtype is not None and dtype.kind in "iu":
            count = int(reader.read_array(self.path, entry.spans, dtype, ()))
            if count > 1 << 30:
                raise CheckpointError(self.path, f"{entry.name!r} is too large for MindSpore's crc scheme")
            zeros = bytes(min(max(count, 0), 1 << 22))
            while count > 0:
                crc = binascii.crc32(zeros[: min(count, len(zeros))], crc)
                count -= len(zeros)
            return crc
        for chunk in reader.iter_chunks(self.path, entry.spans, np.dtype(np.uint8), 1 << 22):
            crc = binascii.crc32(chunk, crc)
        return crc

    def _check_unchanged(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise CheckpointError(self.path, "the file was removed after it was opened") from None
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise CheckpointError(self.path, "the file changed after it was opened; open it again")

    def summary(self, depth: int | None = 2, group: str | None = None) -> str:
        """Multi-line text: header line with totals, groups, then the tree to ``depth`` levels."""
        root = self.tree(group)
        lines = [
            f"{os.path.basename(self.path)}  ({self.format}, {len(self)} tensors, "
            f"{self.num_params:,} parameters, {format_size(self.file_size)})"
        ]
        counts: dict[str, list[int]] = {}
        for info in self.entries:
            c = counts.setdefault(info.group, [0, 0, 0])
            c[0] += 1
            c[1] += info.numel
            c[2] += info.nbytes
        for grp, (n, numel, nbytes) in counts.items():
            lines.append(f"  {grp}: {n} tensors, {numel:,} values, {format_size(nbytes)}")
        lines.append("")
        lines.extend(render(root, depth))
        return "\n".join(lines)

    def __repr__(self) -> str:
        groups: dict[str, int] = {}
        for info in self.entries:
            groups[info.group] = groups.get(info.group, 0) + 1
        parts = ", ".join(f"{n} {g}" for g, n in groups.items())
        return (
            f"<Checkpoint {self.path!r} format={self.format} tensors={len(self)} ({parts}) "
            f"params={self.num_params:,} size={format_size(self.file_size)}>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In a notebook, a Checkpoint as a cell's last expression shows the browser (text as fallback).

        The widgets layer is imported only here, on display, so the index itself never depends on it.
        """
        try:
            from ms_notebook.widgets.browser import checkpoint_mimebundle
        except ImportError:
            return {"text/plain": repr(self)}
        return checkpoint_mimebundle(self, include, exclude)
