"""Read a value's bytes from its spans: whole (into one preallocated array) or in bounded chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .errors import CheckpointError

CHUNK_ELEMENTS = 1 << 21  # 2 Mi elements: at most 16 MiB once widened to float64


def read_array(
    path: str, spans: Sequence[tuple[int, int]], dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """The array stored in ``spans``; reads exactly those bytes and nothing else."""
    total = sum(length for _, length in spans)
    out = np.empty(total // dtype.itemsize if dtype.itemsize else 0, dtype=dtype)
    view = memoryview(out.view(np.uint8))
    pos = 0
    with open(path, "rb") as f:
        for offset, length in spans:
            f.seek(offset)
            got = f.readinto(view[pos : pos + length])
            if got != length:
                raise CheckpointError(path, f"file ended while reading bytes {offset}..{offset + length}")
            pos += length
    return out.reshape(shape)


def read_bytes(path: str, spans: Sequence[tuple[int, int]]) -> bytes:
    """The raw bytes of ``spans`` joined (used for small values such as strings)."""
    parts = []
    with open(path, "rb") as f:
        for offset, length in spans:
            f.seek(offset)
            data = f.read(length)
            if len(data) != length:
                raise CheckpointError(path, f"file ended while reading bytes {offset}..{offset + length}")
            parts.append(data)
    return b"".join(parts)


def iter_chunks(
    path: str, spans: Sequence[tuple[int, int]], dtype: np.dtype, chunk_elements: int = CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yield the value as flat arrays of at most ``chunk_elements`` elements, reading piece by piece.

    Each yielded array is a view of one reused buffer: use it before asking for the next.
    """
    itemsize = dtype.itemsize
    step = max(1, chunk_elements) * itemsize
    buf = np.empty(step, dtype=np.uint8)
    filled = 0
    with open(path, "rb") as f:
        for offset, length in spans:
            f.seek(offset)
            remaining = length
            while remaining:
                want = min(step - filled, remaining)
                got = f.readinto(memoryview(buf)[filled : filled + want])
                if got != want:
                    raise CheckpointError(path, f"file ended while reading bytes at {offset}")
                filled += got
                remaining -= got
                if filled == step:
                    yield buf.view(dtype)
                    filled = 0
    whole = filled - filled % itemsize
    if whole:
        yield buf[:whole].view(dtype)
