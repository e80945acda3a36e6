"""Index a ``.safetensors`` file from its header, without reading tensor bytes.

The header is 8 bytes of little-endian length, then that many bytes of JSON: ``{name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {...}}``, offsets relative to the end of the header. We read it
with positioned reads and validate it ourselves, as the ``safetensors`` library does (known dtypes, byte
counts that match the shape, offsets that tile the data region exactly, inside the file): the library's
``safe_open`` memory-maps the file, and a file truncated under a map raises SIGBUS. MindSpore writes standard
safetensors dtypes and ``__metadata__`` such as ``{"format": "ms", "crc_num": ...}``.

A header is checked twice over only when something is off: a tight loop accepts the well-formed ones, and
anything it does not accept goes through the careful reader, which names the problem (or accepts what the
tight loop leaves to it, such as extra keys in an entry).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from ..dtypes import SAFETENSORS_TO_MS, numpy_dtype
from ..errors import CheckpointError
from . import RawEntry, RawIndex
from .window import Stamp, open_regular, stamp_of

_MAX_HEADER = 100 * 1024 * 1024
_FIRST_READ = 4096  # one page: the length and a header of up to ~30 tensors; a longer one takes a second read
_ITEMSIZE = {st: (ms, numpy_dtype(ms).itemsize) for st, ms in SAFETENSORS_TO_MS.items()}  # type: ignore[union-attr]
_PAIRS = json.JSONDecoder(object_pairs_hook=tuple)  # objects as tuples of pairs: duplicates stay visible


def detect(head: bytes, file_size: int) -> bool:
    """True when ``head`` (the first bytes) starts like a safetensors file of ``file_size`` bytes."""
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(file_size - 8, _MAX_HEADER) and head[8:9] == b"{"


def read_index(path: str) -> RawIndex:
    """Index a .safetensors file: names (in file order), shapes, MindSpore dtype names and byte spans."""
    entries, metadata, stamp = read_header(path)
    return RawIndex("safetensors", entries, metadata=metadata, stamps={path: stamp})


def read_header(path: str, file: str | None = None) -> tuple[list[RawEntry], dict[str, str], Stamp]:
    """``(entries in file order, metadata, stamp)`` of a .safetensors file; ``file`` goes on every entry
    (a set's shard). One descriptor: its fstat is the stamp, one or two reads fetch the header."""
    fd = open_regular(path)
    try:
        if hasattr(os, "posix_fadvise"):  # no readahead into the tensor bytes
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        stamp = stamp_of(os.fstat(fd))
        text = _header_bytes(path, fd, stamp[0])
        data_start = 8 + len(text)
        found = _tight(text, data_start, stamp[0] - data_start, file)
        header = _parse(path, text) if found is None else None
        _check_unchanged(path, fd, stamp)
    finally:
        os.close(fd)
    if found is None:
        assert header is not None
        found = _careful(path, header, data_start, stamp[0], file)
    return found[0], found[1], stamp


def _header_bytes(path: str, fd: int, size: int) -> bytes:
    """The header's JSON bytes (after the 8-byte length), checked against the file's size."""
    if size < 8:
        raise CheckpointError(path, "truncated safetensors file (no header length)")
    want = min(_FIRST_READ, size)
    first = os.pread(fd, want, 0)
    if len(first) != want:
        raise CheckpointError(path, "the file ended early: it was truncated while it was being read")
    n = int.from_bytes(first[:8], "little")
    if n > min(size - 8, _MAX_HEADER):
        raise CheckpointError(path, f"safetensors header claims {n} bytes but the file has {size}")
    if 8 + n <= want:
        return first[8 : 8 + n]
    rest = os.pread(fd, 8 + n - want, want)
    if len(rest) != 8 + n - want:
        raise CheckpointError(path, "the file ended early: it was truncated while it was being read")
    return first[8:] + rest


def _check_unchanged(path: str, fd: int, stamp: Stamp) -> None:
    """CheckpointError when the file differs from when it was opened (resized, rewritten, replaced)."""
    try:
        now = stamp_of(os.stat(path))
    except FileNotFoundError:
        raise CheckpointError(path, "the file was removed while it was being read") from None
    if stamp_of(os.fstat(fd)) != stamp or now != stamp:
        raise CheckpointError(path, "the file changed while it was being read; open it again")


def _tight(
    text: bytes, data_start: int, data_size: int, file: str | None
) -> tuple[list[RawEntry], dict[str, str]] | None:
    """The entries and metadata of a well-formed header, or None for anything else (the careful reader then
    explains it): every entry exactly ``dtype``, ``shape``, ``data_offsets``, of a known dtype, with ints
    for dims and offsets, its byte count, and offsets that tile ``[0, data_size)``; no name twice; string
    metadata."""
    try:
        top = _PAIRS.decode(text.decode(json.detect_encoding(text), "surrogatepass"))
    except (ValueError, RecursionError):
        return None
    if type(top) is not tuple or len(dict(top)) != len(top):
        return None
    metadata: dict[str, str] = {}
    entries: list[RawEntry] = []
    append = entries.append
    itemsizes = _ITEMSIZE
    pos = 0
    in_order = True
    for name, pairs in top:
        if name == "__metadata__":
            if type(pairs) is not tuple:
                return None
            metadata = dict(pairs)
            if len(metadata) != len(pairs) or not all(type(v) is str for v in metadata.values()):
                return None
            continue
        if type(pairs) is not tuple or len(pairs) != 3:
            return None
        (k0, dtype), (k1, shape), (k2, offsets) = pairs
        if k0 != "dtype" or k1 != "shape" or k2 != "data_offsets":  # the keys in another order
            info = dict(pairs)
            if len(info) != 3:
                return None
            dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if type(shape) is not list or type(offsets) is not list or len(offsets) != 2:
            return None
        known = itemsizes.get(dtype) if type(dtype) is str else None
        begin, end = offsets
        if known is None or type(begin) is not int or type(end) is not int:
            return None
        numel = 1
        for d in shape:
            if type(d) is not int or d < 0:
                return None
            numel *= d
        length = end - begin
        if numel * known[1] != length:
            return None
        if begin != pos:
            in_order = False
        pos = end
        append(RawEntry(name, tuple(shape), known[0], "tensor", [(data_start + begin, length)], length, file))
    if not in_order:  # stored in another order than listed: sort, as the careful reader does
        entries.sort(key=lambda e: e.spans[0][0])
        pos = data_start
        for e in entries:
            offset, length = e.spans[0]
            if offset != pos:
                return None
            pos += length
        pos -= data_start
    if pos != data_size:
        return None
    return entries, metadata


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the name {key!r} appears twice")
        out[key] = value
    return out


def _parse(path: str, text: bytes) -> dict[str, Any]:
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(path, f"safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "safetensors header is not a JSON object")
    return header


def _entry(path: str, name: str, info: Any, data_size: int, data_start: int, file: str | None) -> RawEntry:
    """One header entry, checked: known dtype, non-negative dims, byte count = numel × itemsize."""
    bad = f"safetensors entry {name!r} has a malformed header"
    if not isinstance(info, dict):
        raise CheckpointError(path, bad)
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not (isinstance(dtype, str) and isinstance(shape, list) and isinstance(offsets, list)):
        raise CheckpointError(path, bad)
    if len(offsets) != 2 or not all(type(d) is int for d in (*shape, *offsets)):
        raise CheckpointError(path, bad)
    ms_dtype = SAFETENSORS_TO_MS.get(dtype)
    if ms_dtype is None:
        raise CheckpointError(path, f"safetensors entry {name!r} has unsupported dtype {dtype!r}")
    if any(d < 0 for d in shape):
        raise CheckpointError(path, f"safetensors entry {name!r} has negative dims {shape}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise CheckpointError(path, f"safetensors entry {name!r} lies outside the file")
    numel = 1
    for d in shape:
        numel *= d
    itemsize = numpy_dtype(ms_dtype).itemsize  # type: ignore[union-attr]
    if numel * itemsize != end - begin:
        raise CheckpointError(
            path,
            f"safetensors entry {name!r} claims shape {shape} of {dtype} ({numel * itemsize} bytes) "
            f"but spans {end - begin} bytes",
        )
    span = [(data_start + begin, end - begin)]
    return RawEntry(name, tuple(shape), ms_dtype, "tensor", span, end - begin, file)


def _careful(
    path: str, header: dict[str, Any], data_start: int, size: int, file: str | None
) -> tuple[list[RawEntry], dict[str, str]]:
    """The entries and metadata of a parsed header, each check naming what is wrong."""
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "safetensors __metadata__ is not a JSON object")
    data_size = size - data_start
    entries = [_entry(path, str(name), info, data_size, data_start, file) for name, info in header.items()]
    entries.sort(key=lambda e: e.spans[0][0])
    # the values must tile the data region: no gaps, no overlaps, nothing left over (as the library checks)
    pos = data_start
    for e in entries:
        offset, length = e.spans[0]
        if offset != pos:
            raise CheckpointError(
                path,
                f"safetensors entry {e.name!r} starts at byte {offset}, not {pos}: offsets overlap "
                "or leave a gap",
            )
        pos += length
    if pos != size:
        raise CheckpointError(
            path,
            f"safetensors data ends at byte {pos} but the file has {size} bytes (truncated or padded)",
        )
    return entries, {str(k): str(v) for k, v in metadata.items()}
