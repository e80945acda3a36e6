"""Read a value's bytes: whole (into one preallocated array) or in bounded chunks, from one file's spans or
assembled from the slices of several files.

Every read is a positioned read (``os.preadv``) on a descriptor checked against the file's stamp (size,
mtime, inode) when it is opened and again after reading, so a file truncated, rewritten or replaced since it
was indexed gives CheckpointError, never wrong bytes or a signal. ``stamps`` maps a file to the stamp it had
when it was indexed; a file without one is only checked for running short.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from .errors import CheckpointError
from .formats import Piece, RawEntry
from .formats.window import open_regular, stamp_of
from .remote import RemoteStamp

CHUNK_ELEMENTS = 1 << 21  # 2 Mi elements: at most 16 MiB once widened to float64
MAX_NDIM = 32  # what NumPy 1.26 can hold in one array
_MAX_PREAD = 1 << 30  # Linux returns at most ~2 GiB per call: read big spans in pieces

Stamps = Mapping[str, tuple[int, ...]]
_CHANGED = "the file changed after it was opened; open it again"


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return stamp_of(st)


@contextmanager
def _opened(path: str, stamps: Stamps | None) -> Iterator[int]:
    """A read-only descriptor on ``path``, refused when the file is not the one that was indexed (a remote
    object's reader instead: its stamp carries it)."""
    if stamps and isinstance(remote := stamps.get(path), RemoteStamp):
        yield remote.source  # type: ignore[misc]
        return
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise CheckpointError(path, "the file was removed after it was opened") from None
    try:
        expected = stamps.get(path) if stamps else None
        if expected is not None and _stamp(os.fstat(fd)) != expected:
            raise CheckpointError(path, _CHANGED)
        yield fd
        if expected is not None and _stamp(os.fstat(fd)) != expected:
            raise CheckpointError(path, _CHANGED)
    finally:
        os.close(fd)


def _still_same(fd: int, path: str, stamps: Stamps | None) -> None:
    if type(fd) is not int:
        return  # a remote object: each range was read with its validator as a precondition
    expected = stamps.get(path) if stamps else None
    if expected is not None and _stamp(os.fstat(fd)) != expected:
        raise CheckpointError(path, _CHANGED)


def _pread_into(fd: int, path: str, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``offset``; CheckpointError when the file ends first (it was truncated)."""
    if type(fd) is not int:
        fd.pread_into(view, offset)  # type: ignore[attr-defined]  # a RemoteSource
        return
    pos = 0
    want = len(view)
    while pos < want:
        got = os.preadv(fd, [view[pos : min(want, pos + _MAX_PREAD)]], offset + pos)
        if got <= 0:
            at = offset + pos
            raise CheckpointError(path, f"file ended while reading bytes {at}..{offset + want} (truncated?)")
        pos += got


def empty_array(path: str, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape)``, or a CheckpointError saying why NumPy cannot hold a value of that shape."""
    if len(shape) > MAX_NDIM:
        raise CheckpointError(
            path,
            f"{name!r} has {len(shape)} dims; a NumPy array holds at most {MAX_NDIM}: read it flat with "
            "iter_chunks(), stats() or preview()",
        )
    try:
        return np.empty(shape, dtype=dtype)
    except (ValueError, MemoryError) as exc:
        raise CheckpointError(
            path, f"{name!r} of shape {list(shape)} cannot be held in memory ({exc})"
        ) from None


def read_array(
    path: str,
    spans: Sequence[tuple[int, int]],
    dtype: np.dtype,
    shape: tuple[int, ...],
    stamps: Stamps | None = None,
    name: str = "value",
) -> np.ndarray:
    """The array stored in ``spans``; reads exactly those bytes and nothing else."""
    out = empty_array(path, name, shape, dtype)
    total = sum(length for _, length in spans)
    if total != out.nbytes:
        raise CheckpointError(path, f"{name!r} holds {total} bytes, its shape needs {out.nbytes}")
    view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
    pos = 0
    with _opened(path, stamps) as fd:
        for offset, length in spans:
            _pread_into(fd, path, view[pos : pos + length], offset)
            pos += length
    return out


def read_bytes(path: str, spans: Sequence[tuple[int, int]], stamps: Stamps | None = None) -> bytes:
    """The raw bytes of ``spans`` joined (used for small values such as strings)."""
    out = bytearray(sum(length for _, length in spans))
    view = memoryview(out)
    pos = 0
    with _opened(path, stamps) as fd:
        for offset, length in spans:
            _pread_into(fd, path, view[pos : pos + length], offset)
            pos += length
    return bytes(out)


def iter_chunks(
    path: str,
    spans: Sequence[tuple[int, int]],
    dtype: np.dtype,
    chunk_elements: int = CHUNK_ELEMENTS,
    stamps: Stamps | None = None,
    limit: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the value as flat arrays of at most ``chunk_elements`` elements, reading span by span.

    Each yielded array is a view of one reused buffer: use it before asking for the next. ``limit`` stops
    after that many elements (a preview reads only what it shows).
    """
    itemsize = dtype.itemsize
    remaining_elements = limit
    total = sum(length for _, length in spans) // itemsize
    if remaining_elements is not None:
        total = min(total, remaining_elements)
    step = max(1, min(chunk_elements, total)) * itemsize
    buf = np.empty(step, dtype=np.uint8)
    mv = memoryview(buf)
    filled = 0
    left = total * itemsize  # bytes still to read
    with _opened(path, stamps) as fd:
        for offset, length in spans:
            take = min(length, left)
            pos = 0
            while pos < take:
                want = min(step - filled, take - pos)
                _pread_into(fd, path, mv[filled : filled + want], offset + pos)
                filled += want
                pos += want
                if filled == step:
                    _still_same(fd, path, stamps)
                    yield buf.view(dtype)
                    filled = 0
            left -= take
            if left <= 0:
                break
        whole = filled - filled % itemsize
        if whole:
            _still_same(fd, path, stamps)
            yield buf[:whole].view(dtype)


# -- values: one file's spans, or slices assembled from several files ------------------------------------


def value_file(path: str, entry: RawEntry) -> str:
    """The file holding ``entry``'s spans (``path``, the checkpoint's own file, unless the entry says)."""
    return entry.file or path


def read_value(path: str, entry: RawEntry, dtype: np.dtype, stamps: Stamps | None = None) -> np.ndarray:
    """The whole value of ``entry`` as an array of its shape: its spans, or its pieces put in place."""
    if entry.pieces is None:
        return read_array(value_file(path, entry), entry.spans, dtype, entry.shape, stamps, entry.name)
    out = empty_array(path, entry.name, entry.shape, dtype)
    whole = tuple((0, d) for d in entry.shape)
    if out.size:
        _fill_box(out, whole, entry.pieces, dtype, stamps)
    return out


def read_value_bytes(path: str, entry: RawEntry, stamps: Stamps | None = None) -> bytes:
    """The raw bytes of a single-file value (strings and other small values)."""
    if entry.pieces is not None:
        raise CheckpointError(path, f"{entry.name!r} is assembled from slices; read it as an array")
    return read_bytes(value_file(path, entry), entry.spans, stamps)


def iter_value(
    path: str,
    entry: RawEntry,
    dtype: np.dtype,
    chunk_elements: int = CHUNK_ELEMENTS,
    stamps: Stamps | None = None,
    limit: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield the value as flat arrays in C order, each at most ``chunk_elements`` elements when the shape
    allows it (an assembled value is cut along its dims, so a chunk never splits a trailing row it cannot).

    Each yielded array may be a view of a reused buffer: use it before asking for the next. ``limit`` stops
    after about that many elements (at least that many, when the value has them).
    """
    if entry.pieces is None:
        yield from iter_chunks(value_file(path, entry), entry.spans, dtype, chunk_elements, stamps, limit)
        return
    if len(entry.shape) > MAX_NDIM:
        raise CheckpointError(path, f"{entry.name!r} has {len(entry.shape)} dims; slices of a value with "
                              f"more than {MAX_NDIM} dims cannot be assembled")  # fmt: skip
    seen = 0
    for box in c_order_boxes(entry.shape, max(1, chunk_elements)):
        block = np.empty(tuple(stop - start for start, stop in box), dtype=dtype)
        _fill_box(block, box, entry.pieces, dtype, stamps)
        yield block.reshape(-1)
        seen += block.size
        if limit is not None and seen >= limit:
            return


def c_order_boxes(shape: tuple[int, ...], chunk_elements: int) -> Iterator[tuple[tuple[int, int], ...]]:
    """Boxes that cover ``shape`` in C order, each contiguous in C order and, where the shape allows,
    at most ``chunk_elements`` elements: a run along one axis, single indices before it, whole dims after.

    Iterative (an explicit odometer over the leading single indices), so deep shapes need no recursion.
    """
    if not shape:
        yield ()
        return
    if 0 in shape:
        return
    # the first axis k from which the trailing dims hold at most chunk_elements (or the last axis)
    inner = 1
    k = len(shape) - 1
    while k > 0 and inner * shape[k] <= chunk_elements:
        inner *= shape[k]
        k -= 1
    # axes < k are single indices, axis k runs in steps of ``rows``, axes > k are whole
    rows = max(1, chunk_elements // inner)
    rest = tuple((0, d) for d in shape[k + 1 :])
    index = [0] * k
    while True:
        lead = tuple((i, i + 1) for i in index)
        for start in range(0, shape[k], rows):
            yield (*lead, (start, min(start + rows, shape[k])), *rest)
        axis = k - 1
        while axis >= 0:
            index[axis] += 1
            if index[axis] < shape[axis]:
                break
            index[axis] = 0
            axis -= 1
        if axis < 0:
            return


_BLOCK_BYTES = 1 << 19  # pieces that cannot be read in place pass through a buffer this size (stays in cache)


def _fill_box(
    out: np.ndarray,
    box: tuple[tuple[int, int], ...],
    pieces: Sequence[Piece],
    dtype: np.dtype,
    stamps: Stamps | None = None,
) -> None:
    """Fill ``out`` (shaped like ``box``) from the pieces overlapping ``box``; every element must be covered.

    An overlap that is one contiguous run of both the piece and ``out`` (row splits) is read in place with one
    positioned read; any other (column splits) is read a few rows at a time through a small buffer and copied
    into place, so the extra copy runs from the CPU cache.
    """
    covered = 0
    scratch: np.ndarray | None = None
    for piece in pieces:
        lo = [max(a, pa) for (a, _), (pa, _) in zip(box, piece.box, strict=True)]
        hi = [min(b, pb) for (_, b), (_, pb) in zip(box, piece.box, strict=True)]
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            continue
        local = [(low - pa, h - pa) for low, h, (pa, _) in zip(lo, hi, piece.box, strict=True)]
        target = tuple(slice(low - a, h - a) for low, h, (a, _) in zip(lo, hi, box, strict=True))
        dest = out[target]
        first, count = _run(local, piece.shape)
        if count == dest.size and dest.flags.c_contiguous:  # the run is exactly the overlap: read in place
            _read_range(piece.file, piece.spans, first * dtype.itemsize, dest.reshape(-1), stamps)
            covered += dest.size
            continue
        # a few of the overlap's first-dim rows at a time (at least one), each as the run that holds them
        row = dest.size // dest.shape[0] if dest.ndim else 1
        step = max(1, _BLOCK_BYTES // max(1, row * dtype.itemsize)) if dest.ndim else 1
        a0, b0 = local[0] if local else (0, 1)
        with _opened(piece.file, stamps) as fd:
            for i in range(a0, b0, step):
                part = [(i, min(i + step, b0)), *local[1:]] if local else []
                shape = tuple(b - a for a, b in part)
                first, count = _run(part, piece.shape)
                if scratch is None or scratch.size < count:
                    scratch = np.empty(max(count, _BLOCK_BYTES // dtype.itemsize), dtype=dtype)
                run = scratch[:count]
                _pread_range(fd, piece.file, piece.spans, first * dtype.itemsize, run)
                if count == _numel(shape):  # the run is exactly this part (whole trailing dims)
                    view = run.reshape(shape)
                else:
                    strides = _strides(piece.shape, dtype.itemsize)
                    view = np.lib.stride_tricks.as_strided(run, shape=shape, strides=strides, writeable=False)
                if dest.ndim:
                    dest[i - a0 : i - a0 + shape[0]] = view
                else:
                    dest[...] = view
        covered += dest.size
    if covered != out.size:
        raise CheckpointError(
            pieces[0].file if pieces else "", f"the slices cover {covered} of {out.size} elements of a block"
        )


def _run(local: Sequence[tuple[int, int]], shape: tuple[int, ...]) -> tuple[int, int]:
    """``(first, count)``: the smallest C-order run of a piece shaped ``shape`` that holds the sub-box
    ``local`` (from its first to its last element)."""
    first = last = 0
    for (a, b), d in zip(local, shape, strict=True):
        first = first * d + a
        last = last * d + (b - 1)
    return first, last - first + 1


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    out = []
    step = itemsize
    for d in reversed(shape):
        out.append(step)
        step *= d
    return tuple(reversed(out))


def _read_range(
    file: str, spans: Sequence[tuple[int, int]], start: int, out: np.ndarray, stamps: Stamps | None = None
) -> None:
    """Read ``out.nbytes`` bytes starting ``start`` bytes into the concatenation of ``spans`` of ``file``."""
    with _opened(file, stamps) as fd:
        _pread_range(fd, file, spans, start, out)


def _pread_range(fd: int, file: str, spans: Sequence[tuple[int, int]], start: int, out: np.ndarray) -> None:
    """``_read_range`` on an open file descriptor."""
    view = memoryview(out.view(np.uint8))
    want = len(view)
    pos = 0
    for offset, length in spans:
        if start >= length:
            start -= length
            continue
        take = min(length - start, want - pos)
        _pread_into(fd, file, view[pos : pos + take], offset + start)
        pos += take
        start = 0
        if pos == want:
            return
    if pos != want:
        raise CheckpointError(file, "a slice holds fewer bytes than its shape needs")
