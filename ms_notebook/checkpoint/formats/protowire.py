"""Protobuf wire-format primitives shared by the readers that parse it by hand (``.ckpt``, strategy files).

The index layer never imports protobuf nor MindSpore; these few rules are all either reader needs.
"""

from __future__ import annotations

from typing import Protocol


class Malformed(Exception):
    """Internal: a structural problem at a byte offset (each reader turns it into a CheckpointError naming
    its file)."""


class Bytes(Protocol):
    def __getitem__(self, pos: int, /) -> int: ...


def varint(buf: Bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos`` (not reading at or past ``end``); returns (value, next position).

    ``buf`` is anything indexed by file offset: ``bytes`` of a whole message, or a reader's window.
    """
    result = shift = 0
    while True:
        if pos >= end:
            raise Malformed(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Malformed(f"varint too long at byte {pos}")
