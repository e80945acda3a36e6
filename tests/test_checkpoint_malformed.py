"""Malformed files: a clear CheckpointError naming the file, never a crash, hang, MemoryError or traceback."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402
from mindspore.train import checkpoint_pb2  # noqa: E402

from ms_notebook.checkpoint import CheckpointError, open_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """Bytes of small, varied checkpoints MindSpore writes: a network with appended values, both formats."""
    folder = tmp_path_factory.mktemp("originals")
    net = nn.SequentialCell(nn.Dense(3, 4), nn.BatchNorm1d(4), nn.Dense(4, 2))
    out = {}
    for fmt in ("ckpt", "safetensors"):
        path = folder / f"net.{fmt}"
        append = {"epoch_num": 3, "note": "hello"} if fmt == "ckpt" else {"epoch_num": 3}
        ms.save_checkpoint(net, str(path), append_dict=append, format=fmt, crc_check=True)
        out[fmt] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cases")


def _exercise(scratch: Path, data: bytes, suffix: str) -> None:
    """Open ``data`` as a file and use every part of the API; only CheckpointError may escape."""
    path = scratch / f"case{suffix}"
    path.write_bytes(data)
    try:
        ck = open_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    ck.tree().to_dict()
    repr(ck)
    ck.summary()
    for info in ck.entries:
        try:
            ck[info.name]
        except CheckpointError as exc:
            assert str(path) in str(exc)
        if info.kind == "tensor":
            ck.stats(info.name)
            ck.histogram(info.name, bins=8)
    with contextlib.suppress(CheckpointError):
        ck.verify()


PROPERTY = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@PROPERTY
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_truncated_files_raise_only_checkpoint_error(originals, scratch, fmt, cut):
    data = originals[fmt]
    _exercise(scratch, data[: cut % len(data)], f".{fmt}")


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@PROPERTY
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips_raise_only_checkpoint_error(originals, scratch, fmt, flips):
    data = bytearray(originals[fmt])
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    _exercise(scratch, bytes(data), f".{fmt}")


@PROPERTY
@given(data=st.binary(min_size=0, max_size=2000))
def test_random_bytes_raise_only_checkpoint_error(scratch, data):
    _exercise(scratch, data, ".ckpt")


@PROPERTY
@given(tail=st.binary(min_size=0, max_size=300))
def test_random_bytes_after_a_protobuf_start_raise_only_checkpoint_error(scratch, tail):
    _exercise(scratch, b"\x0a" + tail, ".ckpt")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_checkpoint(tmp_path / "nope.ckpt")


def test_empty_file_is_reported_as_empty(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty") as err:
        open_checkpoint(path)
    assert str(path) in str(err.value)


def test_other_file_types_are_named_as_not_checkpoints(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("just some text, not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a MindSpore checkpoint"):
        open_checkpoint(path)


def test_directory_is_rejected_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="directory"):
        open_checkpoint(tmp_path)


def _entry(name: str, dims, tensor_type: str, content: bytes) -> bytes:
    msg = checkpoint_pb2.Checkpoint()
    value = msg.value.add()
    value.tag = name
    value.tensor.dims.extend(dims)
    value.tensor.tensor_type = tensor_type
    value.tensor.tensor_content = content
    return msg.SerializeToString()


@pytest.mark.parametrize(
    ("dims", "tensor_type", "content", "problem"),
    [
        ([1 << 40, 1 << 40], "Float32", bytes(16), "claims shape"),
        ([-3, 2], "Float32", bytes(24), "negative dims"),
        ([2, 2], "Float32", bytes(12), "claims shape"),
        ([2], "Quaternion", bytes(8), "unknown tensor_type"),
        ([0], "str", b"abc", "UTF-32"),
    ],
)
def test_entries_that_lie_about_their_size_are_rejected(tmp_path, dims, tensor_type, content, problem):
    path = tmp_path / "lying.ckpt"
    path.write_bytes(_entry("ok", [1], "Int8", b"\x01") + _entry("bad", dims, tensor_type, content))
    with pytest.raises(CheckpointError, match=problem) as err:
        open_checkpoint(path)
    assert "'bad'" in str(err.value) and str(path) in str(err.value)


def test_entry_length_beyond_the_file_is_rejected_without_reading(tmp_path):
    good = _entry("w", [4], "Float32", np.arange(4, dtype=np.float32).tobytes())
    path = tmp_path / "cut.ckpt"
    path.write_bytes(good[:-3])
    with pytest.raises(CheckpointError, match="runs past"):
        open_checkpoint(path)


def test_safetensors_header_claiming_more_than_the_file_is_rejected(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}}).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(path)
    assert str(path) in str(err.value)


def test_file_changed_after_opening_is_detected(tmp_path):
    path = tmp_path / "w.ckpt"
    path.write_bytes(_entry("w", [2], "Float32", bytes(8)))
    ck = open_checkpoint(path)
    path.write_bytes(_entry("w", [2], "Float32", bytes(8)) + _entry("v", [1], "Float32", bytes(4)))
    with pytest.raises(CheckpointError, match="changed"):
        ck["w"]
