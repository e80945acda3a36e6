"""Only regular files are opened: a FIFO (which blocks its reader until a writer comes) or a device where a
checkpoint, shard, index or strategy file should be is a CheckpointError at once, never a hang (each case in a
child process with a timeout and a memory cap). And a same-size rewrite with its mtime put back is seen
(ctime and inode are part of every stamp): ``is_stale()`` says so and reading refuses the old index."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from ms_notebook.checkpoint import CheckpointError, open_checkpoint
from tests.bounded_child import run_bounded
from tests.ckpt_wire import write_ckpt, write_safetensors

ROW = np.arange(8, dtype=np.float32)


def _open(path, **kwargs) -> dict:
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return run_bounded(
        "from ms_notebook.checkpoint import open_checkpoint\n"
        f"_report(lambda: [e.name for e in open_checkpoint({str(path)!r}{args}).entries])\n",
        timeout_s=30,
    )


def _refused(result: dict, *words: str) -> None:
    assert result["outcome"] == "CheckpointError", result
    for word in words:
        assert word in result["message"], result


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_a_fifo_checkpoint_is_refused_not_waited_on(tmp_path, suffix):
    os.mkfifo(tmp_path / f"model{suffix}")
    _refused(_open(tmp_path / f"model{suffix}"), "is a FIFO, not a regular file")


def test_a_link_to_a_device_is_refused(tmp_path):
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")
    _refused(_open(tmp_path / "zero.safetensors"), "is a device, not a regular file")


def test_a_fifo_index_and_a_fifo_shard_are_refused(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    os.mkfifo(a / "model.safetensors.index.json")
    _refused(_open(a / "model.safetensors.index.json"), "FIFO")
    b = tmp_path / "b"
    b.mkdir()
    write_safetensors(b / "model-00001-of-00002.safetensors", {"w": ("F32", [8], ROW.tobytes())})
    os.mkfifo(b / "model-00002-of-00002.safetensors")
    (b / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}))
    _refused(_open(b), "model-00002-of-00002.safetensors", "FIFO")


def test_a_fifo_strategy_file_is_refused(tmp_path):
    for r in range(2):
        (tmp_path / f"rank_{r}").mkdir()
        write_ckpt(tmp_path / f"rank_{r}" / "net.ckpt", [("w", [8], "Float32", ROW.tobytes())])
    os.mkfifo(tmp_path / "strategy.json")
    _refused(_open(tmp_path, strategy=str(tmp_path / "strategy.json")), "FIFO")


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_a_same_size_rewrite_with_its_mtime_put_back_is_stale(tmp_path, fmt):
    path = tmp_path / f"m.{fmt}"

    def write(name: str) -> None:
        if fmt == "ckpt":
            write_ckpt(path, [(name, [8], "Float32", ROW.tobytes())])
        else:
            write_safetensors(path, {name: ("F32", [8], ROW.tobytes())})

    write("old.w")
    ck = open_checkpoint(path)
    before = os.stat(path)
    time.sleep(0.05)  # past the coarse clock's tick: the rewrite gets a new ctime
    write("new.w")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    same = ("st_size", "st_mtime_ns", "st_ino")
    assert [getattr(after, k) for k in same] == [getattr(before, k) for k in same]
    assert ck.is_stale()
    with pytest.raises(CheckpointError, match="changed after it was opened"):
        ck["old.w"]
    assert list(open_checkpoint(path)) == ["new.w"]
