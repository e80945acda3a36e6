"""Checkpoint files written by hand in MindSpore's wire layout, for cases MindSpore's own writer cannot make
(hostile, huge or odd): one protobuf ``Checkpoint`` message per entry, as ``save_checkpoint`` writes them."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # negative dims as protobuf writes int64
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def entry(name: str, dims: Iterable[int], tensor_type: str, content: bytes) -> bytes:
    """One ``Checkpoint { value { tag, tensor { dims, tensor_type, tensor_content } } }`` message."""
    tensor = b"".join(b"\x08" + varint(d) for d in dims)
    tensor += b"\x12" + varint(len(tensor_type)) + tensor_type.encode()
    tensor += b"\x1a" + varint(len(content)) + content
    tag = name.encode()
    value = b"\x0a" + varint(len(tag)) + tag + b"\x12" + varint(len(tensor)) + tensor
    return b"\x0a" + varint(len(value)) + value


def write_ckpt(path: Path, entries: Iterable[tuple[str, Iterable[int], str, bytes]]) -> Path:
    with open(path, "wb") as f:
        for name, dims, tensor_type, content in entries:
            f.write(entry(name, dims, tensor_type, content))
    return path


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> Path:
    """A safetensors file: ``{name: (dtype, shape, raw bytes)}`` laid out in order."""
    header: dict = {"__metadata__": {"format": "ms"}}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, data in tensors.values():
            f.write(data)
    return path
