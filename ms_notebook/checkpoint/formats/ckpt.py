"""Streaming reader for MindSpore's protobuf ``.ckpt`` files that never reads tensor bytes.

The file written by ``mindspore.save_checkpoint`` is a concatenation of one-entry ``Checkpoint`` messages::

    Checkpoint { repeated Value value = 1; }
    Value { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
    TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                  required bytes tensor_content = 3; }
    MapTensorProto { repeated TensorProto tensor = 1; }

Tensors over 512 MiB are written as consecutive entries with the same tag (each repeating the full dims)
whose contents are joined. ``crc_check=True`` appends ``b"crc_num"`` + the crc32 of everything before it as
10 big-endian bytes.

We walk the protobuf wire format by hand with positioned reads (``os.pread`` into one small reusable window,
readahead switched off), recording only the offset and length of each ``tensor_content``: listing a cold
1 GB file reads a few pages per entry, not the file. Every length is checked against the file size before it
is trusted, and a file that shrinks, grows or is replaced while it is read gives CheckpointError (never a
signal, as a memory map would).
"""

from __future__ import annotations

import os

from .. import index_cache
from ..dtypes import STRING, numpy_dtype
from ..errors import CheckpointError
from . import RawEntry, RawIndex
from .prefetch import PAGE, HeaderPrefetch
from .protowire import Malformed, varint
from .window import FileChanged, Window, open_for_index

CRC_MAGIC = b"crc_num"
CRC_TRAILER = len(CRC_MAGIC) + 10
ENCRYPTED_MAGICS = {b"\xd8\x5e\x3a\x7f": "AES-GCM", b"\xd9\x5e\x3a\x7f": "AES-CBC"}
_MAX_DIMS = 64
_MAX_HEADER = 64 << 20  # a tag plus dims and type longer than this is not a checkpoint entry
_HEAD = 512  # bytes of an entry's header the fast path wants in the window


# --- the general parser: any field order, reads header bytes through the window as it goes -------------


def _skip(win: Window, wire: int, pos: int, end: int) -> int:
    """Skip an unknown field's payload (without reading it); returns the position after it."""
    if wire == 0:
        return varint(win, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        length, pos = varint(win, pos, end)
        pos += length
    else:
        raise Malformed(f"unsupported wire type {wire} at byte {pos}")
    if pos > end:
        raise Malformed(f"field runs past the end of its message at byte {pos}")
    return pos


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(win: Window, pos: int, length: int, what: str, encoding: str) -> str:
    if length > _MAX_HEADER:
        raise Malformed(f"{what} of {length} bytes at byte {pos} is too long")
    try:
        return win.read(pos, length).decode(encoding)
    except UnicodeDecodeError:
        raise Malformed(f"{what} is not text at byte {pos}") from None


def _tensor(win: Window, pos: int, end: int) -> tuple[list[int], str, int, int]:
    """Parse a TensorProto in [pos, end): returns (dims, tensor_type, content offset, content length)."""
    dims: list[int] = []
    dtype: str | None = None
    content: tuple[int, int] | None = None
    while pos < end:
        key, pos = varint(win, pos, end)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 0:
            value, pos = varint(win, pos, end)
            dims.append(_signed64(value))
        elif field == 1 and wire == 2:  # packed dims
            length, pos = varint(win, pos, end)
            stop = pos + length
            if stop > end:
                raise Malformed(f"dims run past their message at byte {pos}")
            while pos < stop:
                value, pos = varint(win, pos, stop)
                dims.append(_signed64(value))
                if len(dims) > _MAX_DIMS:
                    break
        elif field == 2 and wire == 2:
            length, pos = varint(win, pos, end)
            if pos + length > end or length > 64:
                raise Malformed(f"bad tensor_type length {length} at byte {pos}")
            dtype = _text(win, pos, length, "tensor_type", "ascii")
            pos += length
        elif field == 3 and wire == 2:
            length, pos = varint(win, pos, end)
            if pos + length > end:
                raise Malformed(
                    f"tensor_content of {length} bytes at byte {pos} runs past its message (file truncated?)"
                )
            content = (pos, length)
            pos += length
        else:
            pos = _skip(win, wire, pos, end)
        if len(dims) > _MAX_DIMS:
            raise Malformed(f"more than {_MAX_DIMS} dims at byte {pos}")
    if dtype is None:
        raise Malformed(f"tensor without tensor_type ending at byte {end}")
    if content is None:
        content = (end, 0)
    return dims, dtype, content[0], content[1]


def _maptensor(win: Window, pos: int, end: int) -> tuple[str, list[int], str, int, int]:
    """A MapTensorProto: listed with the dims and type of its values tensor (the second of
    key/value/status)."""
    tensors = []
    while pos < end:
        key, pos = varint(win, pos, end)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 2:
            length, pos = varint(win, pos, end)
            if pos + length > end:
                raise Malformed(f"maptensor field runs past its entry at byte {pos}")
            if len(tensors) < 3:
                tensors.append(_tensor(win, pos, pos + length))
            pos += length
        else:
            pos = _skip(win, wire, pos, end)
    dims, dtype, off, size = tensors[1] if len(tensors) > 1 else (tensors[0] if tensors else ([], "", end, 0))
    return ("maptensor", dims, dtype, off, size)


def _value(win: Window, pos: int, end: int) -> tuple[str, str, list[int], str, int, int]:
    """Parse a Value in [pos, end): returns (tag, kind, dims, tensor_type, content offset, content length)."""
    tag: str | None = None
    parsed: tuple[str, list[int], str, int, int] | None = None
    while pos < end:
        key, pos = varint(win, pos, end)
        field, wire = key >> 3, key & 7
        if wire != 2:
            pos = _skip(win, wire, pos, end)
            continue
        length, pos = varint(win, pos, end)
        stop = pos + length
        if stop > end:
            raise Malformed(f"field of {length} bytes at byte {pos} runs past its entry (file truncated?)")
        if field == 1:
            tag = _text(win, pos, length, "tag", "utf-8")
        elif field == 2:
            dims, dtype, off, size = _tensor(win, pos, stop)
            parsed = ("tensor", dims, dtype, off, size)
        elif field == 3:
            parsed = _maptensor(win, pos, stop)
        pos = stop
    if tag is None:
        raise Malformed(f"entry without a tag ending at byte {end}")
    if parsed is None:
        raise Malformed(f"entry {tag!r} has neither tensor nor maptensor")
    return (tag, *parsed)


# --- the fast path: MindSpore's own field order, parsed straight out of the window buffer ----------------

def _varint_at(buf: bytearray, q: int) -> tuple[int, int]:
    """A varint at ``q`` (the fast path inlines the short ones)."""
    value = shift = 0
    while True:
        b = buf[q]
        q += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, q
        shift += 7
        if shift > 63:
            raise IndexError  # not a varint of ours: let the general parser say what is wrong


def _fast_value(
    buf: bytearray, pos: int, stop: int, base: int, limit: int
) -> tuple[str, str, list[int], str, int, int] | None:
    """Parse a Value laid out exactly as MindSpore's writer lays it out, or return None to use ``_value``.

    ``buf[:limit]`` holds the file from byte ``base``; ``pos``/``stop`` are file offsets. Field order
    ``tag, tensor{dims*, tensor_type, tensor_content}`` with short tag and type strings: one pass with
    inlined short varints that only touches header bytes. IndexError means the header is not all in the
    window.
    """
    p = pos - base
    end = stop - base
    if buf[p] != 0x0A:
        return None
    n = buf[p + 1]
    if n >= 0x80:
        return None
    q = p + 2 + n
    if q > limit:
        raise IndexError
    tag = buf[p + 2 : q].decode("utf-8")
    if buf[q] != 0x12:
        return None
    b = buf[q + 1]
    if b < 0x80:
        length, q = b, q + 2
    elif buf[q + 2] < 0x80:
        length, q = (b & 0x7F) | (buf[q + 2] << 7), q + 3
    elif buf[q + 3] < 0x80:
        length, q = (b & 0x7F) | ((buf[q + 2] & 0x7F) << 7) | (buf[q + 3] << 14), q + 4
    else:
        length, q = _varint_at(buf, q + 1)
    if q + length != end:
        return None
    dims = []
    while buf[q] == 0x08:
        b = buf[q + 1]
        if b < 0x80:
            dims.append(b)
            q += 2
        elif buf[q + 2] < 0x80:
            dims.append((b & 0x7F) | (buf[q + 2] << 7))
            q += 3
        else:
            value, q = _varint_at(buf, q + 1)
            dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        if q >= end or len(dims) > _MAX_DIMS:
            return None
    if buf[q] != 0x12:
        return None
    n = buf[q + 1]
    if n >= 0x80:
        return None
    if q + 2 + n > limit:
        raise IndexError
    dtype = buf[q + 2 : q + 2 + n].decode("ascii")
    q += 2 + n
    if q >= end or buf[q] != 0x1A:
        return None
    b = buf[q + 1]
    if b < 0x80:
        length, q = b, q + 2
    elif buf[q + 2] < 0x80:
        length, q = (b & 0x7F) | (buf[q + 2] << 7), q + 3
    elif buf[q + 3] < 0x80:
        length, q = (b & 0x7F) | ((buf[q + 2] & 0x7F) << 7) | (buf[q + 3] << 14), q + 4
    else:
        length, q = _varint_at(buf, q + 1)
    if q > limit:  # bytes past the window's valid part were used: widen it and parse again
        raise IndexError
    if q + length != end:
        return None
    return tag, "tensor", dims, dtype, q + base, length


def _entry(win: Window, pos: int, stop: int) -> tuple[str, str, list[int], str, int, int]:
    """One Value in [pos, stop): the fast path over the window, widened while the header does not fit."""
    want = 256
    while True:
        buf, base = win.cover(pos, min(want, stop - pos))
        try:
            parsed = _fast_value(buf, pos, stop, base, win.limit - base)
        except UnicodeDecodeError:
            parsed = None
        except IndexError:
            if want >= stop - pos or want >= _MAX_HEADER:
                parsed = None
            else:
                want *= 4
                continue
        return parsed if parsed is not None else _value(win, pos, stop)


def _walk(win: Window, size: int) -> tuple[list[RawEntry], dict[str, int], int | None, int]:
    """Every entry of the file in order; repeated tags merged (split tensors) or replaced (later wins)."""
    entries: list[RawEntry] = []
    position: dict[str, int] = {}  # tag -> its index in ``entries`` (handed on: the Checkpoint's name lookup)
    dtypes: dict[str, str] = {}
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple per distinct shape
    # how far an entry's tensor field is from its end -> the bytes from that field to the content of the
    # last fast-parsed entry with that distance, and what they say (dims, type, size, kind, shape): entries
    # of the same shape and type repeat those bytes (a few dozen kept, against files of endless variety)
    same: dict[int, tuple[bytes, list[int], str, int, str, tuple[int, ...]]] = {}
    last: RawEntry | None = None
    crc: int | None = None
    pos = 0
    end = size
    buf, base = win.cover(0, _HEAD)
    limit = win.limit
    ahead = HeaderPrefetch(win.fd, size, _HEAD)
    while pos < end:
        if end - pos == CRC_TRAILER and win.read(pos, len(CRC_MAGIC)) == CRC_MAGIC:
            crc = int.from_bytes(win.read(pos + len(CRC_MAGIC), 10), "big")
            end = pos
            break
        if pos + _HEAD > limit and limit < size:
            if pos - limit > PAGE:  # a jump over tensor bytes: a disk round trip when the file is cold
                ahead.at_jump(entries, pos)
            buf, base = win.cover(pos, _HEAD)
            limit = win.limit
        parsed = None
        hit = False  # parsed from the previous entry's bytes
        # fast path: key 0x0A and a short length varint straight from the buffer
        r = pos - base
        if buf[r] == 0x0A and limit - pos > 11:
            b = buf[r + 1]
            if b < 0x80:
                length, start = b, pos + 2
            else:
                length, shift, q = b & 0x7F, 7, r + 2
                while True:
                    b = buf[q]
                    q += 1
                    length |= (b & 0x7F) << shift
                    if b < 0x80 or shift > 56:
                        break
                    shift += 7
                start = q + base
            stop = start + length
            if b < 0x80 and stop <= end and start < limit:
                p = start - base
                n = buf[p + 1]
                q = p + 2 + n  # the tensor field, after a tag of under 128 bytes
                known = same.get(stop - base - q) if buf[p] == 0x0A and n < 0x80 else None
                if known is not None:
                    head, dims, dtype, nbytes, kind, shape = known
                    if q + len(head) <= limit - base and buf[q : q + len(head)] == head:
                        # the bytes from the tensor field to its content are an earlier entry's (same dims,
                        # type and sizes, at the same place from the end): only the tag is new
                        try:
                            tag = buf[p + 2 : q].decode("utf-8")
                            parsed = (tag, "tensor", dims, dtype, stop - nbytes, nbytes)
                            hit = True
                        except UnicodeDecodeError:
                            parsed = None
                if parsed is None:
                    try:
                        parsed = _fast_value(buf, start, stop, base, limit - base)
                    except (IndexError, UnicodeDecodeError):
                        parsed = None
                    if parsed is not None and (known is not None or len(same) < 64):
                        # the fast path checked the tag's key and length byte
                        dtype = dtypes.setdefault(parsed[3], parsed[3])
                        shape = tuple(parsed[2])
                        shape = shapes.setdefault(shape, shape)
                        kind = STRING if dtype == STRING else "tensor"
                        head = bytes(buf[q : parsed[4] - base])
                        same[stop - base - q] = (head, parsed[2], dtype, parsed[5], kind, shape)
        if parsed is None:  # anything else: the general parser, which widens the window as needed
            key, start = varint(win, pos, end)
            field, wire = key >> 3, key & 7
            if field != 1 or wire != 2:
                if field == 0 or wire in (3, 4):
                    raise Malformed(f"unexpected bytes at offset {pos} (not a checkpoint entry)")
                pos = _skip(win, wire, start, end)
                continue
            length, start = varint(win, start, end)
            stop = start + length
            if stop > end:
                raise Malformed(
                    f"entry of {length} bytes at byte {start} runs past the end of the file (truncated?)"
                )
            parsed = _entry(win, start, stop)
            buf, base = win.buf, win.base
            limit = win.limit
        tag, kind, dims, dtype, off, nbytes = parsed
        pos = stop
        if last is not None and last.name == tag and last.kind == kind:
            if kind == "tensor" and (list(last.shape) != dims or last.ms_dtype != dtype):
                raise Malformed(f"split entry {tag!r} changes its dims or type at byte {off}")
            last.add_span(off, nbytes)
            continue
        if hit:
            kind = STRING if dtype == STRING else "tensor"  # dtype and shape: the template's, interned
        else:
            if dtype == STRING and kind == "tensor":
                kind = STRING
            dtype = dtypes.setdefault(dtype, dtype)  # one string object per type name
            shape = tuple(dims)
            shape = shapes.setdefault(shape, shape)
        entry = RawEntry(tag, shape, dtype, kind, off, nbytes)  # one span: its offset alone
        at = position.get(tag)
        if at is not None:
            # a repeated, non-consecutive tag: the later value wins at the first one's place, as in the
            # dict load_checkpoint fills
            entries[at] = entry
        else:
            position[tag] = len(entries)
            entries.append(entry)
        last = entry
    return entries, position, crc, end


def _finish(path: str, entries: list[RawEntry]) -> None:
    """Validate dims and byte counts; normalise scalar and string shapes (each distinct shape once)."""
    sizes: dict[tuple[tuple[int, ...], str], int] = {}  # (shape, type) -> bytes it needs
    shape: tuple[int, ...] | None = None
    dtype, need = "", 0  # of the previous tensor: the next one is mostly alike (the same objects)
    for e in entries:
        kind = e.kind
        if kind == "tensor":
            if e.shape is not shape or e.ms_dtype is not dtype:
                shape, dtype = e.shape, e.ms_dtype
                key = (shape, dtype)
                need = sizes.get(key)  # type: ignore[assignment]
                if need is None:
                    need = sizes[key] = _bytes_needed(path, e)
            if need != e.nbytes:
                if e.shape == (0,) and e.nbytes == numpy_dtype(e.ms_dtype).itemsize:  # type: ignore[union-attr]
                    e.shape = ()  # MindSpore reads dims [0] holding one value as a scalar
                    continue
                raise CheckpointError(
                    path,
                    f"entry {e.name!r} claims shape {list(e.shape)} of {e.ms_dtype} "
                    f"({need} bytes) but holds {e.nbytes} bytes",
                )
        elif kind == "maptensor":
            e.shape = tuple(max(d, 0) for d in e.shape)
        else:  # a string
            if any(d < 0 for d in e.shape):
                raise CheckpointError(path, f"entry {e.name!r} has negative dims {list(e.shape)}")
            if e.nbytes % 4:
                raise CheckpointError(path, f"string entry {e.name!r} is {e.nbytes} bytes, not UTF-32 text")
            e.shape = ()


def _bytes_needed(path: str, e: RawEntry) -> int:
    """Bytes a tensor of ``e``'s shape and type holds; CheckpointError for negative dims or unknown types."""
    if any(d < 0 for d in e.shape):
        raise CheckpointError(path, f"entry {e.name!r} has negative dims {list(e.shape)}")
    dtype = numpy_dtype(e.ms_dtype)
    if dtype is None:
        raise CheckpointError(path, f"entry {e.name!r} has unknown tensor_type {e.ms_dtype!r}")
    numel = 1
    for d in e.shape:
        numel *= d  # exact Python ints: absurd dims cannot overflow, and are compared by the caller
    return numel * dtype.itemsize


def detect(head: bytes) -> str | None:
    """``"ckpt"`` when ``head`` (the first bytes) looks like a protobuf checkpoint, ``"encrypted"`` for
    MindSpore's encrypted checkpoints, else None."""
    if head[:4] in ENCRYPTED_MAGICS:
        return "encrypted"
    if head[:1] == b"\x0a":
        return "ckpt"
    return None


def read_index(path: str) -> RawIndex:
    """Index a .ckpt file: every entry's name, dims, type and byte spans, without reading tensor bytes.

    A file indexed before and unchanged since (same device, inode, size, mtime and ctime) is answered from its
    saved index (``index_cache``); any other is walked, and its index saved."""
    with open_for_index(path) as win:
        size = win.size
        if size == 0:
            raise CheckpointError(path, "the file is empty")
        try:
            saved = index_cache.load(path, win.stat)
            if saved is not None:
                win.check_unchanged()  # the path still names the file opened
                entries, positions, crc, crc_end = saved
                return RawIndex("ckpt", entries, crc=crc, crc_end=crc_end, stamps={path: win.stamp},
                                positions=positions)  # fmt: skip
            head = win.read(0, min(4, size))
            if head in ENCRYPTED_MAGICS:
                raise CheckpointError(
                    path,
                    f"the checkpoint is encrypted ({ENCRYPTED_MAGICS[head]}); pass the key to "
                    "mindspore.load_checkpoint(..., dec_key=...) to read it",
                )
            entries, positions, crc, crc_end = _walk(win, size)
            win.check_unchanged()
        except Malformed as exc:
            raise CheckpointError(path, f"not a valid MindSpore checkpoint: {exc}") from None
        except FileChanged as exc:
            raise CheckpointError(path, str(exc)) from None
        stamp = win.stamp
        _finish(path, entries)
        if index_cache.identity(os.fstat(win.fd)) == index_cache.identity(win.stat):  # not changed meanwhile
            index_cache.save(path, win.stat, entries, crc, crc_end)
    return RawIndex("ckpt", entries, crc=crc, crc_end=crc_end, stamps={path: stamp}, positions=positions)
