"""Index a ``.safetensors`` file from its header, without reading tensor bytes.

The ``safetensors`` library validates the header (offsets contiguous and inside the file); we then read the
same JSON header for each tensor's byte offsets so values can be read lazily, chunk by chunk. MindSpore writes
standard safetensors dtypes and ``__metadata__`` such as ``{"format": "ms", "crc_num": ...}``.
"""

from __future__ import annotations

import json
import os
import struct

from ..dtypes import SAFETENSORS_TO_MS
from ..errors import CheckpointError
from . import RawEntry, RawIndex

_MAX_HEADER = 100 * 1024 * 1024


def detect(head: bytes, file_size: int) -> bool:
    """True when ``head`` (the first bytes) starts like a safetensors file of ``file_size`` bytes."""
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(file_size - 8, _MAX_HEADER) and head[8:9] == b"{"


def _header(path: str, size: int) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(path, "truncated safetensors file (no header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, _MAX_HEADER):
            raise CheckpointError(path, f"safetensors header claims {n} bytes but the file has {size}")
        text = f.read(n)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(path, f"safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "safetensors header is not a JSON object")
    return header, 8 + n


def _validate_with_library(path: str) -> None:
    """Let the safetensors library check the header against the file (offsets, sizes, dtypes)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            f.keys()
    except Exception as exc:  # SafetensorError and friends: report as a malformed file
        raise CheckpointError(path, f"not a valid safetensors file: {exc}") from None


def read_index(path: str) -> RawIndex:
    """Index a .safetensors file: names (in file order), shapes, MindSpore dtype names and byte spans."""
    size = os.path.getsize(path)
    header, data_start = _header(path, size)
    _validate_with_library(path)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "safetensors __metadata__ is not a JSON object")
    entries = []
    for name, info in header.items():
        try:
            dtype = info["dtype"]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(path, f"safetensors entry {name!r} has a malformed header") from None
        ms_dtype = SAFETENSORS_TO_MS.get(dtype)
        if ms_dtype is None:
            raise CheckpointError(path, f"safetensors entry {name!r} has unsupported dtype {dtype!r}")
        if not 0 <= begin <= end <= size - data_start:
            raise CheckpointError(path, f"safetensors entry {name!r} lies outside the file")
        span = (data_start + begin, end - begin)
        entries.append(RawEntry(name, shape, ms_dtype, "tensor", [span], end - begin))
    entries.sort(key=lambda e: e.spans[0][0])
    return RawIndex("safetensors", entries, metadata={str(k): str(v) for k, v in metadata.items()})
