"""``open_checkpoint`` and ``Checkpoint``: a checkpoint file's index, with values read only on demand."""

from __future__ import annotations

import binascii
import gc
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import reader
from .dtypes import STRING, numpy_dtype
from .errors import CheckpointError
from .formats import RawEntry, RawIndex
from .formats import ckpt as ckpt_format
from .formats import safetensors as st_format
from .formats.window import FileChanged, open_for_index, stamp_of
from .groups import WEIGHTS, classify
from .info import TensorInfo
from .remote import RemoteStamp, is_url, redact
from .stats import TensorStats, compute_histogram, compute_stats, sketch
from .summaries import SKETCHES, SUMMARIES, TensorSummary
from .tree import Node, build_tree, format_size, render

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("ckpt", "safetensors")
DEFAULT_BINS = 40


def open_checkpoint(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    strategy: str | os.PathLike[str] | Sequence[str] | None = None,
    step: int | str | None = None,
    file: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Checkpoint:
    """Index a MindSpore ``.ckpt`` or ``.safetensors`` file (format detected from its content), or a set of
    files read as one checkpoint: a folder or ``*.safetensors.index.json`` of shards, a folder of ``rank_N/``
    files from a distributed run (``strategy=`` the strategy file if it is not in the folder; ``step=`` or
    ``file=`` picks a rank folder's file), or MindFormers' ``param_name_map.json`` layout (see ``sets``).

    Only headers are read; tensor values are read when asked for.

    ``path`` may be a URL (``https://``, ``s3://``, any scheme fsspec knows): the object is read by range
    requests, never downloaded; ``storage_options`` go to its filesystem (credentials, ``endpoint_url`` in
    ``client_kwargs``, ``timeout``, ``retries``). A ``*.safetensors.index.json`` URL opens its shards, a
    folder URL ending in ``/`` (or with ``strategy=`` a URL) its ``rank_N/`` files (listed through fsspec).

    Raises FileNotFoundError for a missing file and CheckpointError for anything malformed or encrypted.
    """
    from .sets import is_set_path, open_set  # sets build on this module

    if is_url(path):
        from .remote_index import open_remote

        return open_remote(str(path), storage_options, format, strategy=strategy, step=step, file=file)
    if storage_options is not None:
        raise ValueError("storage_options= applies to URLs, not to local paths")
    if is_set_path(path):
        return open_set(path, format=format, strategy=strategy, step=step, file=file)
    if strategy is not None or step is not None or file is not None:
        raise ValueError("strategy=, step= and file= apply to folders of rank_N/ files, not to one file")
    return Checkpoint(path, format=format)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a large index is built: it makes no cycles, and the collector
    would otherwise walk every object made so far again and again (the cost grew faster than the entries)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _detect(path: str) -> str:
    with open_for_index(path) as win:
        if win.size == 0:
            raise CheckpointError(path, "the file is empty")
        try:
            head = win.read(0, min(16, win.size))
        except FileChanged as exc:
            raise CheckpointError(path, str(exc)) from None
        size = win.size
    if st_format.detect(head, size):
        return "safetensors"
    kind = ckpt_format.detect(head)
    if kind is not None:
        return "ckpt"  # the ckpt reader explains encrypted files itself
    raise CheckpointError(
        path, "not a MindSpore checkpoint: neither a .ckpt protobuf nor a .safetensors file"
    )


class _RawByName(Mapping[str, RawEntry]):
    """name -> RawEntry, read through the one name -> TensorInfo dict (no second dict of a million keys).

    A plain value (spans in the checkpoint's own file) keeps only its spans on its TensorInfo (one span: its
    offset alone); its RawEntry is made when asked for, so a million entries do not hold a million RawEntry
    objects (nor span tuples) beside their infos.
    """

    __slots__ = ("_infos",)

    def __init__(self, infos: dict[str, TensorInfo]) -> None:
        self._infos = infos

    def __getitem__(self, name: str) -> RawEntry:
        info = self._infos[name]
        raw = info._raw
        if isinstance(raw, RawEntry):
            return raw
        spans = ((raw, info.nbytes),) if type(raw) is int else raw
        return RawEntry(info.name, info.shape, info.dtype, info.kind, spans, info.nbytes)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)


class Checkpoint:
    """The index of one checkpoint file: names, shapes, dtypes and groups, with values read lazily.

    ``len``, ``iter`` (names in file order), ``in`` and ``ck[name]`` (a NumPy array, or ``str`` for string
    values) work like a read-only mapping. Nothing but the headers is read until a value is asked for.
    Every read checks that the file is still the one indexed (size, mtime, inode) and raises
    CheckpointError when it was truncated, rewritten or replaced.
    """

    remote: dict[str, Any] | None = None  # a remote checkpoint: its URL and what listing it cost

    def __init__(self, path: str | os.PathLike[str], format: str | None = None) -> None:
        path = os.fspath(path)
        if is_url(path):
            raise CheckpointError(redact(path), "is a URL: open it with open_checkpoint(url)")
        if os.path.isdir(path):
            raise CheckpointError(path, "is a directory: open it with open_checkpoint() to read it as a set")
        os.stat(path)  # FileNotFoundError for a missing file
        fmt = format or _detect(path)
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        with paused_gc():  # one pause for reading and converting: one collection of the new objects after
            raw: RawIndex = (ckpt_format if fmt == "ckpt" else st_format).read_index(path)
            self._setup(path, raw, consume=True)

    @classmethod
    def from_index(cls, path: str | os.PathLike[str], raw: RawIndex) -> Checkpoint:
        """A Checkpoint over an index a reader built (a set of files: shards, ranks); ``path`` names it."""
        self = cls.__new__(cls)
        self._setup(os.fspath(path), raw)
        return self

    def _setup(self, path: str, raw: RawIndex, consume: bool = False) -> None:
        """Take over ``raw``; ``consume``: it is ours (read here), its RawEntry list may be emptied as it is
        converted, which keeps the peak memory of a million entries down."""
        with paused_gc():
            self._build(path, raw, consume)

    def _build(self, path: str, raw: RawIndex, consume: bool) -> None:
        self.path = path
        files = raw.files or [path]
        self._stamps: dict[str, tuple[int, ...]] = {}
        for file in files:
            stamp = raw.stamps.get(file)
            if stamp is None:
                stamp = stamp_of(os.stat(file))
            self._stamps[file] = stamp
        self.files: list[str] = list(self._stamps)
        self.file_size = sum(stamp[0] for stamp in self._stamps.values())
        self.format = raw.format
        self.metadata = raw.metadata
        self.entries: list[TensorInfo] = self._infos(raw.entries, consume)
        self._raw = replace(raw, entries=[], positions=None)  # the entries live on as TensorInfo objects
        by_name: dict[str, Any] | None = raw.positions if consume else None
        if by_name is not None and len(by_name) == len(self.entries):
            for info in self.entries:  # the reader's name -> position dict, its values replaced in place
                by_name[info.name] = info
        else:
            by_name = {info.name: info for info in self.entries}
        raw.positions = None
        self._info_by_name: dict[str, TensorInfo] = by_name
        self._by_name: Mapping[str, RawEntry] = _RawByName(self._info_by_name)
        self._tree: Node | None = None
        self._tree_order: list[TensorInfo] | None = None

    def _infos(self, raw: list[RawEntry], consume: bool) -> list[TensorInfo]:
        groups = classify([e.name for e in raw], [e.kind for e in raw], [e.shape for e in raw])
        infos = []
        append = infos.append
        shapes: dict[tuple[int, ...], tuple[tuple[int, ...], int]] = {}  # one tuple per shape, its numel
        last: tuple[int, ...] | None = None  # the previous entry's shape object: the next mostly shares it
        shape, numel = (), 1
        for i, (e, group) in enumerate(zip(raw, groups, strict=True)):
            if e.shape is not last:
                last = e.shape
                known = shapes.get(last)
                if known is None:
                    numel = 1
                    for d in last:
                        numel *= d
                    known = shapes[last] = (last, numel)
                shape, numel = known
            e.shape = shape
            where: object = e  # a value from other files keeps its RawEntry; a plain one only its spans
            if e.file is None and e.pieces is None:
                spans = e.stored_spans
                if type(spans) is int:
                    where = spans
                elif len(spans) == 1 and spans[0][1] == e.nbytes:
                    where = spans[0][0]  # one span: its offset
                else:
                    where = spans if type(spans) is tuple else tuple(spans)
            append(TensorInfo(e.name, shape, e.ms_dtype, numel, e.nbytes, group, e.kind, where))
            if consume:
                raw[i] = None  # type: ignore[call-overload]  # free each RawEntry once it is converted
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
        if entry.kind == "maptensor":
            raise CheckpointError(
                self.path, f"{name!r} is a MapParameter (maptensor); reading it is not supported"
            )
        if entry.kind == STRING:
            try:
                data = reader.read_value_bytes(self.path, entry, self._stamps)
                return data.decode("utf-32-le").rstrip("\x00")
            except UnicodeDecodeError:
                raise CheckpointError(self.path, f"string {name!r} is not valid UTF-32 text") from None
        dtype = numpy_dtype(entry.ms_dtype)
        assert dtype is not None  # validated when indexing
        return reader.read_value(self.path, entry, dtype, self._stamps)

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
        """Nested nodes split on ``.`` with per-subtree totals, children in natural order (``layers.2``
        before ``layers.10``); ``group`` keeps only that group's entries."""
        if group is not None:
            return build_tree(info for info in self.entries if info.group == group)
        if self._tree is None:
            with paused_gc():
                self._tree = build_tree(self.entries)
        return self._tree

    def tree_order(self) -> list[TensorInfo]:
        """The entries in the order the tree shows them (depth first, natural order): what views list."""
        if self._tree_order is None:
            with paused_gc():
                self._tree_order = self.tree().infos()
        return self._tree_order

    def _numeric(self, name: str) -> tuple[RawEntry, np.dtype]:
        entry = self._by_name[name]
        dtype = numpy_dtype(entry.ms_dtype)
        if entry.kind != "tensor" or dtype is None:
            raise TypeError(f"{name!r} is a {entry.kind} value; statistics need a numeric tensor")
        return entry, dtype

    def iter_chunks(self, name: str, chunk_elements: int = reader.CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
        """Yield a numeric tensor as flat arrays of at most ``chunk_elements`` elements, in C order.

        Memory stays bounded by one chunk; each array may be a view of a reused buffer (copy it to keep it).
        """
        entry, dtype = self._numeric(name)
        return reader.iter_value(self.path, entry, dtype, chunk_elements, self._stamps)

    def preview(self, name: str, count: int = 24) -> np.ndarray:
        """The first ``count`` values in C order, flat; reads only those elements."""
        entry, dtype = self._numeric(name)
        count = max(0, count)
        parts, got = [], 0
        if count:
            for chunk in reader.iter_value(self.path, entry, dtype, count, self._stamps, limit=count):
                parts.append(chunk[: count - got].copy())
                got += len(parts[-1])
                if got >= count:
                    break
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    def describe(
        self, name: str, bins: int = DEFAULT_BINS, cancelled: Callable[[], bool] | None = None
    ) -> TensorSummary:
        """Statistics and a ``bins``-bin histogram of a numeric tensor from one pass over its bytes.

        Cached per (file stamps, tensor, bins) for the whole process, so every view (Viewer, widget, API)
        asking again gets the answer at once; what the pass saw is kept too, so another ``bins`` follows
        from it without a second pass (except for a tensor of one chunk, read again in a few milliseconds).
        ``cancelled`` is polled between chunks: return True to stop the pass with
        ``checkpoint.errors.Cancelled`` (the server does when the client has gone).
        """
        entry, dtype = self._numeric(name)
        bins = max(1, int(bins))
        stamps = self._entry_stamps(entry)
        key = (stamps, name, bins)

        def compute() -> TensorSummary:
            seen = SKETCHES.get((stamps, name))
            if seen is not None:
                return TensorSummary(*seen.summary(bins))
            chunks = reader.iter_value(self.path, entry, dtype, reader.CHUNK_ELEMENTS, self._stamps)
            numel = self._info_by_name[name].numel
            answer, seen = sketch(chunks, dtype, bins, cancelled, numel)
            if seen is not None:
                SKETCHES.put((stamps, name), seen)
            return TensorSummary(*answer)

        return SUMMARIES.get_or_compute(key, compute, cancelled)

    def is_described(self, name: str, bins: int = DEFAULT_BINS) -> bool:
        """Whether ``describe(name, bins)`` would answer without reading the tensor (its summary, or what an
        earlier pass kept for any other ``bins``, is cached)."""
        stamps = self._entry_stamps(self._by_name[name])
        return (SUMMARIES.get((stamps, name, max(1, int(bins)))) is not None
                or SKETCHES.get((stamps, name)) is not None)

    def _entry_stamps(self, entry: RawEntry) -> tuple:
        """The files ``entry`` is read from, with their stamps: part of every cache key."""
        if entry.pieces is None:
            files = [reader.value_file(self.path, entry)]
        else:
            files = sorted({piece.file for piece in entry.pieces})
        return tuple((file, self._stamps.get(file)) for file in files)

    def stats(self, name: str, chunk_elements: int = reader.CHUNK_ELEMENTS) -> TensorStats:
        """Mean, std, min, max, mean |x|, zero fraction, NaN and Inf counts, from one bounded pass (cached
        with ``describe``'s histogram; another ``chunk_elements`` computes afresh)."""
        if chunk_elements == reader.CHUNK_ELEMENTS:
            return self.describe(name).stats
        entry, dtype = self._numeric(name)
        return compute_stats(reader.iter_value(self.path, entry, dtype, chunk_elements, self._stamps), dtype)

    def histogram(
        self,
        name: str,
        bins: int = 50,
        range: tuple[float, float] | None = None,
        chunk_elements: int = reader.CHUNK_ELEMENTS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` of the finite values over [min, max] (``describe``'s: no pass at all after
        ``stats()`` or another ``bins``), or over ``range`` exactly as ``numpy.histogram`` (one pass).

        The counts are always exact for the edges returned. The edges are ``numpy.histogram``'s except for
        4- and 8-byte tensors over several chunks, where they enclose [min, max] within a fraction of a
        percent (whole runs of the pass's fine grid); ``range=(s.min, s.max)`` gives numpy's own edges."""
        entry, dtype = self._numeric(name)
        if range is None:
            if chunk_elements == reader.CHUNK_ELEMENTS:
                summary = self.describe(name, bins)
                return summary.counts.copy(), summary.edges.copy()
            chunks = reader.iter_value(self.path, entry, dtype, chunk_elements, self._stamps)
            s = compute_stats(chunks, dtype)
            range = (s.min, s.max)
        chunks = reader.iter_value(self.path, entry, dtype, chunk_elements, self._stamps)
        return compute_histogram(chunks, bins, range)

    def diagnostics(
        self, names: Sequence[str] | None = None, max_size: int | None = None, **kwargs: Any
    ) -> pd.DataFrame:
        """Per-layer norms, stable rank and power-law ``alpha`` of every 2-D weight and conv kernel, from the
        weights alone (see ``checkpoint.diagnostics``); ``max_size`` raises the size above which a layer is
        skipped; ``progress``/``cancelled`` as there."""
        from .diagnostics import DEFAULT_MAX_SIZE, diagnostics

        return diagnostics(self, names, max_size or DEFAULT_MAX_SIZE, **kwargs)

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
        if len(self.files) > 1:
            raise CheckpointError(
                self.path, "verify() checks one file; open each file of the set to verify it"
            )
        if self.format == "ckpt":
            if self._raw.crc is None:
                raise CheckpointError(self.path, "the file has no crc (saved without crc_check=True)")
            crc = 0
            whole = [(0, self._raw.crc_end)]
            for block in reader.iter_chunks(self.path, whole, np.dtype(np.uint8), 1 << 22, self._stamps):
                crc = binascii.crc32(block, crc)
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
            count = int(reader.read_value(self.path, entry, dtype, self._stamps))
            if count > 1 << 30:
                raise CheckpointError(self.path, f"{entry.name!r} is too large for MindSpore's crc scheme")
            zeros = bytes(min(max(count, 0), 1 << 22))
            while count > 0:
                crc = binascii.crc32(zeros[: min(count, len(zeros))], crc)
                count -= len(zeros)
            return crc
        file = reader.value_file(self.path, entry)
        for chunk in reader.iter_chunks(file, entry.spans, np.dtype(np.uint8), 1 << 22, self._stamps):
            crc = binascii.crc32(chunk, crc)
        return crc

    def is_stale(self) -> bool:
        """Whether a file read from changed or vanished since opening (open the checkpoint again)."""
        try:
            self._check_unchanged()
        except CheckpointError:
            return True
        return False

    def _check_unchanged(self) -> None:
        """CheckpointError when a file read from was removed, rewritten, replaced or resized since opening."""
        for file, stamp in self._stamps.items():
            if isinstance(stamp, RemoteStamp):
                stamp.source.check_unchanged()
                continue
            try:
                st = os.stat(file)
            except FileNotFoundError:
                raise CheckpointError(file, "the file was removed after it was opened") from None
            if stamp_of(st) != stamp:
                raise CheckpointError(file, "the file changed after it was opened; open it again")

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
