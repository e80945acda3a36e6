"""The safetensors reader's tight loop answers exactly as its careful reader: the same entries for every
header both accept, the same CheckpointError for every header the careful one rejects."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ms_notebook.checkpoint.errors import CheckpointError
from ms_notebook.checkpoint.formats import safetensors as st_format


def _file(path: Path, header: bytes, data: int) -> str:
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(data))
    return str(path)


def _careful(path: str) -> object:
    """What the careful reader alone answers: (entries, metadata) as plain tuples, or the error text."""
    raw = Path(path).read_bytes()
    try:
        size = len(raw)
        if size < 8:
            raise CheckpointError(path, "truncated safetensors file (no header length)")
        (n,) = struct.unpack("<Q", raw[:8])
        if n > size - 8:
            raise CheckpointError(path, f"safetensors header claims {n} bytes but the file has {size}")
        header = st_format._parse(path, raw[8 : 8 + n])
        entries, metadata = st_format._careful(path, header, 8 + n, size, "f")
    except CheckpointError as exc:
        return str(exc)
    return [(e.name, e.shape, e.ms_dtype, e.kind, list(e.spans), e.nbytes, e.file) for e in entries], metadata


def _ours(path: str) -> object:
    try:
        entries, metadata, _ = st_format.read_header(path, "f")
    except CheckpointError as exc:
        return str(exc)
    return [(e.name, e.shape, e.ms_dtype, e.kind, list(e.spans), e.nbytes, e.file) for e in entries], metadata


def _entry(dtype: object = "F32", shape: object = (2, 3), offsets: object = (0, 24)) -> dict[str, object]:
    return {
        "dtype": dtype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets,
    }


GOOD = {"__metadata__": {"format": "pt"}, "a": _entry(), "b": _entry("BF16", (4,), (24, 32))}
CASES: dict[str, tuple[str, int]] = {
    "well formed": (json.dumps(GOOD), 32),
    "stored in another order": (
        json.dumps({"a": _entry(offsets=(8, 32)), "b": _entry("BF16", (4,), (0, 8))}),
        32,
    ),
    "keys in another order": (
        json.dumps({"a": {"data_offsets": [0, 24], "shape": [2, 3], "dtype": "F32"}}),
        24,
    ),
    "an extra key": (json.dumps({"a": {**_entry(), "note": {"x": 1}}}), 24),
    "zero-length tensors": (
        json.dumps({"z": _entry(shape=(0, 3), offsets=(0, 0)), "y": _entry(shape=(0,), offsets=(0, 0))}),
        0,
    ),
    "a scalar": (json.dumps({"s": _entry("I64", (), (0, 8))}), 8),
    "an empty header": ("{}", 0),
    "metadata null": (json.dumps({"__metadata__": None, "a": _entry()}), 24),
    "metadata empty list": (json.dumps({"__metadata__": [], "a": _entry()}), 24),
    "metadata numbers and objects": (json.dumps({"__metadata__": {"n": 3, "o": {"k": [1]}}}), 0),
    "metadata a string": (json.dumps({"__metadata__": "pt"}), 0),
    "metadata twice": ('{"__metadata__": {}, "__metadata__": {}}', 0),
    "metadata key twice": ('{"__metadata__": {"k": "1", "k": "2"}}', 0),
    "a name twice": (f'{{"a": {json.dumps(_entry())}, "a": {json.dumps(_entry())}}}', 24),
    "a key twice": ('{"a": {"dtype": "F32", "dtype": "F32", "shape": [6], "data_offsets": [0, 24]}}', 24),
    "a duplicate deep inside": (json.dumps({"a": _entry()})[:-1] + ', "b": {"x": {"k": 1, "k": 2}}}', 24),
    "an unknown dtype": (json.dumps({"a": _entry("F8")}), 24),
    "a dtype list": (json.dumps({"a": _entry(["F32"])}), 24),
    "a dtype object": (json.dumps({"a": _entry({"F32": 1})}), 24),
    "a bool dim": (json.dumps({"a": _entry(shape=[True, 6], offsets=(0, 24))}), 24),
    "a float dim": (json.dumps({"a": _entry(shape=[6.0], offsets=(0, 24))}), 24),
    "a negative dim": (json.dumps({"a": _entry(shape=(-2, -3))}), 24),
    "a shape object": (json.dumps({"a": _entry(shape={}, offsets=(0, 4))}), 4),
    "a float offset": (json.dumps({"a": _entry(offsets=[0, 24.0])}), 24),
    "three offsets": (json.dumps({"a": _entry(offsets=(0, 12, 24))}), 24),
    "offsets reversed": (json.dumps({"a": _entry(shape=(0,), offsets=(24, 0))}), 24),
    "wrong byte count": (json.dumps({"a": _entry(offsets=(0, 20))}), 20),
    "a gap": (json.dumps({"a": _entry(offsets=(8, 32))}), 32),
    "an overlap": (json.dumps({"a": _entry(), "b": _entry(offsets=(12, 36))}), 36),
    "padded": (json.dumps({"a": _entry()}), 40),
    "truncated": (json.dumps({"a": _entry()}), 10),
    "past the end": (json.dumps({"a": _entry(offsets=(0, 24))}), 0),
    "an entry as pairs": (
        json.dumps({"a": [["dtype", "F32"], ["shape", [6]], ["data_offsets", [0, 24]]]}),
        24,
    ),
    "an entry of two keys": (json.dumps({"a": {"dtype": "F32", "shape": [6]}}), 24),
    "an entry a string": (json.dumps({"abc": "xyz"}), 0),
    "a top-level array": ("[]", 0),
    "not JSON": ('{"a": ', 0),
    "not UTF-8": ('{"\udcff": 1}', 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_tight_loop_answers_as_the_careful_reader(tmp_path, case):
    text, data = CASES[case]
    header = text.encode("utf-8", "surrogateescape")
    path = _file(tmp_path / "h.safetensors", header, data)
    assert _ours(path) == _careful(path)


TIGHT = ["well formed", "stored in another order", "keys in another order", "zero-length tensors", "a scalar",
         "an empty header"]  # fmt: skip


@pytest.mark.parametrize("case", TIGHT)
def test_well_formed_headers_take_the_tight_loop(case):
    text, data = CASES[case]
    header = text.encode()
    assert st_format._tight(header, 8 + len(header), data, None) is not None


def test_a_header_longer_than_the_first_read_takes_a_second_one(tmp_path):
    n = 2000  # ~100 KB of header
    header = {f"layers.{i}.w": _entry("F16", (2,), (4 * i, 4 * i + 4)) for i in range(n)}
    path = _file(tmp_path / "long.safetensors", json.dumps(header).encode(), 4 * n)
    got = _ours(path)
    assert got == _careful(path) and len(got[0]) == n


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_a_changed_byte_anywhere_in_the_header_is_answered_alike(tmp_path, at, byte):
    header = bytearray(json.dumps(GOOD).encode())
    header[at % len(header)] = byte
    path = _file(tmp_path / "m.safetensors", bytes(header), 32)
    assert _ours(path) == _careful(path)
