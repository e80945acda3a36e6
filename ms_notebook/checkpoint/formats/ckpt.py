"""Streaming reader for MindSpore's protobuf ``.ckpt`` files that never reads tensor bytes.

The file written by ``mindspore.save_checkpoint`` is a concatenation of one-entry ``Checkpoint`` messages::

    Checkpoint { repeated Value value = 1; }
    Value { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
    TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                  required bytes tensor_content = 3; }
    MapTensorProto { repeated TensorProto tensor = 1; }

Tensors over 512 MiB are written as consecutive entries with the same tag (each repeating the full dims)
whose contents are joined. ``crc_check=True`` appends ``b"crc_num"`` + the crc32 of everything before it as
10 big-endian bytes. We walk the protobuf wire format by hand over a memory map, recording only the offset
and length of each ``tensor_content``; every length is checked against the file size before it is trusted.
"""

from __future__ import annotations

import mmap
import os

from ..dtypes import STRING, numpy_dtype
from ..errors import CheckpointError
from . import RawEntry, RawIndex

CRC_MAGIC = b"crc_num"
CRC_TRAILER = len(CRC_MAGIC) + 10
ENCRYPTED_MAGICS = {b"\xd8\x5e\x3a\x7f": "AES-GCM", b"\xd9\x5e\x3a\x7f": "AES-CBC"}
_MAX_DIMS = 64


class _Malformed(Exception):
    """Internal: a structural problem at a byte offset (turned into CheckpointError by read_index)."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    """Decode a protobuf varint at ``pos`` (not past ``end``); returns (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Malformed(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed(f"varint too long at byte {pos}")


def _skip(buf, wire: int, pos: int, end: int) -> int:
    """Skip an unknown field's payload; returns the position after it."""
    if wire == 0:
        return _varint(buf, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        length, pos = _varint(buf, pos, end)
        pos += length
    else:
        raise _Malformed(f"unsupported wire type {wire} at byte {pos}")
    if pos > end:
        raise _Malformed(f"field runs past the end of its message at byte {pos}")
    return pos


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor(buf, pos: int, end: int) -> tuple[list[int], str, int, int]:
    """Parse a TensorProto in [pos, end): returns (dims, tensor_type, content offset, content length)."""
    dims: list[int] = []
    dtype: str | None = None
    content: tuple[int, int] | None = None
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 0:
            value, pos = _varint(buf, pos, end)
            dims.append(_signed64(value))
        elif field == 1 and wire == 2:  # packed dims
            length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise _Malformed(f"dims run past their message at byte {pos}")
            while pos < stop:
                value, pos = _varint(buf, pos, stop)
                dims.append(_signed64(value))
        elif field == 2 and wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end or length > 64:
                raise _Malformed(f"bad tensor_type length {length} at byte {pos}")
            try:
                dtype = bytes(buf[pos : pos + length]).decode("ascii")
            except UnicodeDecodeError:
                raise _Malformed(f"tensor_type is not text at byte {pos}") from None
            pos += length
        elif field == 3 and wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Malformed(
                    f"tensor_content of {length} bytes at byte {pos} runs past its message (file truncated?)"
                )
            content = (pos, length)
            pos += length
        else:
            pos = _skip(buf, wire, pos, end)
        if len(dims) > _MAX_DIMS:
            raise _Malformed(f"more than {_MAX_DIMS} dims at byte {pos}")
    if dtype is None:
        raise _Malformed(f"tensor without tensor_type ending at byte {end}")
    if content is None:
        content = (end, 0)
    return dims, dtype, content[0], content[1]


def _value(buf, pos: int, end: int) -> tuple[str, str, list[int], str, int, int]:
    """Parse a Value in [pos, end): returns (tag, kind, dims, tensor_type, content offset, content length)."""
    tag: str | None = None
    parsed: tuple[str, list[int], str, int, int] | None = None
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire != 2:
            pos = _skip(buf, wire, pos, end)
            continue
        length, pos = _varint(buf, pos, end)
        stop = pos + length
        if stop > end:
            raise _Malformed(f"field of {length} bytes at byte {pos} runs past its entry (file truncated?)")
        if field == 1:
            try:
                tag = bytes(buf[pos:stop]).decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(f"tag is not UTF-8 text at byte {pos}") from None
        elif field == 2:
            dims, dtype, off, size = _tensor(buf, pos, stop)
            parsed = ("tensor", dims, dtype, off, size)
        elif field == 3:
            parsed = _maptensor(buf, pos, stop)
        pos = stop
    if tag is None:
        raise _Malformed(f"entry without a tag ending at byte {end}")
    if parsed is None:
        raise _Malformed(f"entry {tag!r} has neither tensor nor maptensor")
    return (tag, *parsed)


def _maptensor(buf, pos: int, end: int) -> tuple[str, list[int], str, int, int]:
    """A MapTensorProto: listed with the dims and type of its values tensor (the second of
    key/value/status)."""
    tensors = []
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Malformed(f"maptensor field runs past its entry at byte {pos}")
            tensors.append(_tensor(buf, pos, pos + length))
            pos += length
        else:
            pos = _skip(buf, wire, pos, end)
    dims, dtype, off, size = tensors[1] if len(tensors) > 1 else (tensors[0] if tensors else ([], "", end, 0))
    return ("maptensor", dims, dtype, off, size)


def _fast_value(buf, pos: int, stop: int) -> tuple[str, str, list[int], str, int, int] | None:
    """Parse a Value laid out exactly as MindSpore's writer lays it out, or return None to use ``_value``.

    Field order ``tag, tensor{dims*, tensor_type, tensor_content}`` with short tag and type strings: one pass
    with inlined varints, which keeps listing 10,000 entries to a few tens of milliseconds.
    """
    try:
        if buf[pos] != 0x0A:
            return None
        n = buf[pos + 1]
        if n >= 0x80:
            return None
        p = pos + 2 + n
        tag = buf[pos + 2 : p].decode("utf-8")
        if buf[p] != 0x12:
            return None
        p += 1
        length = shift = 0
        while True:
            b = buf[p]
            p += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63:
                return None
        if p + length != stop:
            return None
        dims = []
        while buf[p] == 0x08:
            p += 1
            value = shift = 0
            while True:
                b = buf[p]
                p += 1
                value |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 63:
                    return None
            dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            if p >= stop or len(dims) > _MAX_DIMS:
                return None
        if buf[p] != 0x12:
            return None
        n = buf[p + 1]
        if n >= 0x80:
            return None
        dtype = buf[p + 2 : p + 2 + n].decode("ascii")
        p += 2 + n
        if p >= stop or buf[p] != 0x1A:
            return None
        p += 1
        length = shift = 0
        while True:
            b = buf[p]
            p += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63:
                return None
        if p + length != stop:
            return None
    except (IndexError, UnicodeDecodeError):
        return None
    return tag, "tensor", dims, dtype, p, length


def _walk(buf, size: int) -> tuple[list[RawEntry], int | None, int]:
    entries: list[RawEntry] = []
    by_name: dict[str, RawEntry] = {}
    last: RawEntry | None = None
    crc: int | None = None
    pos = 0
    end = size
    while pos < end:
        if end - pos == CRC_TRAILER and buf[pos : pos + len(CRC_MAGIC)] == CRC_MAGIC:
            crc = int.from_bytes(buf[pos + len(CRC_MAGIC) : end], "big")
            end = pos
            break
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field != 1 or wire != 2:
            if field == 0 or wire in (3, 4):
                raise _Malformed(f"unexpected bytes at offset {pos - 1} (not a checkpoint entry)")
            pos = _skip(buf, wire, pos, end)
            continue
        length, pos = _varint(buf, pos, end)
        stop = pos + length
        if stop > end:
            raise _Malformed(
                f"entry of {length} bytes at byte {pos} runs past the end of the file (truncated?)"
            )
        parsed = _fast_value(buf, pos, stop)
        tag, kind, dims, dtype, off, nbytes = parsed if parsed is not None else _value(buf, pos, stop)
        pos = stop
        if last is not None and last.name == tag and last.kind == kind:
            if kind == "tensor" and (list(last.shape) != dims or last.ms_dtype != dtype):
                raise _Malformed(f"split entry {tag!r} changes its dims or type at byte {off}")
            last.add_span(off, nbytes)
            continue
        entry = RawEntry(tag, tuple(dims), dtype, STRING if dtype == STRING and kind == "tensor" else kind)
        entry.add_span(off, nbytes)
        previous = by_name.get(tag)
        if (
            previous is not None
        ):  # a repeated, non-consecutive tag: the later value wins, as in load_checkpoint
            entries[entries.index(previous)] = entry
        else:
            entries.append(entry)
        by_name[tag] = entry
        last = entry
    return entries, crc, end


def _finish(path: str, entries: list[RawEntry]) -> None:
    """Validate dims and byte counts; normalise scalar and string shapes."""
    for e in entries:
        if e.kind == "maptensor":
            e.shape = tuple(max(d, 0) for d in e.shape)
            continue
        if any(d < 0 for d in e.shape):
            raise CheckpointError(path, f"entry {e.name!r} has negative dims {list(e.shape)}")
        nbytes = e.nbytes
        if e.kind == STRING:
            if nbytes % 4:
                raise CheckpointError(path, f"string entry {e.name!r} is {nbytes} bytes, not UTF-32 text")
            e.shape = ()
            continue
        dtype = numpy_dtype(e.ms_dtype)
        if dtype is None:
            raise CheckpointError(path, f"entry {e.name!r} has unknown tensor_type {e.ms_dtype!r}")
        numel = 1
        for d in e.shape:
            numel *= d  # exact Python ints: absurd dims cannot overflow, and are compared below
        if e.shape == (0,) and nbytes == dtype.itemsize:  # MindSpore reads dims [0] as a scalar
            e.shape = ()
            numel = 1
        if numel * dtype.itemsize != nbytes:
            raise CheckpointError(
                path,
                f"entry {e.name!r} claims shape {list(e.shape)} of {e.ms_dtype} "
                f"({numel * dtype.itemsize} bytes) but holds {nbytes} bytes",
            )


def detect(head: bytes) -> str | None:
    """``"ckpt"`` when ``head`` (the first bytes) looks like a protobuf checkpoint, ``"encrypted"`` for
    MindSpore's
    encrypted checkpoints, else None."""
    if head[:4] in ENCRYPTED_MAGICS:
        return "encrypted"
    if head[:1] == b"\x0a":
        return "ckpt"
    return None


def read_index(path: str) -> RawIndex:
    """Index a .ckpt file: every entry's name, dims, type and byte spans, without reading tensor bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CheckpointError(path, "the file is empty")
        head = f.read(4)
        if head in ENCRYPTED_MAGICS:
            raise CheckpointError(
                path,
                f"the checkpoint is encrypted ({ENCRYPTED_MAGICS[head]}); pass the key to "
                "mindspore.load_checkpoint(..., dec_key=...) to read it",
            )
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                entries, crc, crc_end = _walk(buf, size)
            except _Malformed as exc:
                raise CheckpointError(path, f"not a valid MindSpore checkpoint: {exc}") from None
    _finish(path, entries)
    return RawIndex("ckpt", entries, crc=crc, crc_end=crc_end)
