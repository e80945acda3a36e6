"""merge() never destroys what it merges: a destination that is one of the set's files (by path, link or
hard link) or lies inside its folders is refused and the set still opens; an existing destination that is not
a regular file (a FIFO, a device) is refused before any temporary is made beside it; the leftovers of a
killed merge are removed by the next merge onto the same name, those of a live one kept."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ms_notebook.checkpoint import CheckpointError, open_checkpoint
from ms_notebook.transfer.merge import clean_leftovers, merge
from tests.test_checkpoint_sets_shards import _values, write_shards

pytest.importorskip("mindspore")


@pytest.fixture
def shards(tmp_path):
    values = _values()
    write_shards(tmp_path / "llm", values)
    return open_checkpoint(tmp_path / "llm" / "model.safetensors.index.json"), values


def _untouched(ck, values) -> None:
    again = open_checkpoint(ck.path)
    assert sorted(again) == sorted(values)
    assert all(np.array_equal(again[n], v) for n, v in values.items())


def test_merging_onto_one_of_the_sets_own_files_is_refused(shards, tmp_path):
    ck, values = shards
    shard = ck.files[1]
    with pytest.raises(CheckpointError, match="one of the set's own files"):
        merge(ck, shard, overwrite=True)
    (tmp_path / "link.safetensors").symlink_to(shard)
    os.link(shard, tmp_path / "hard.safetensors")
    ck = open_checkpoint(ck.path)  # a new link changes the shard's ctime: the set is opened again
    for dst in ("link.safetensors", "hard.safetensors"):
        with pytest.raises(CheckpointError, match="one of the set's own files"):
            merge(ck, tmp_path / dst, overwrite=True)
    with pytest.raises(CheckpointError, match="a folder of the set's files"):
        merge(ck, tmp_path / "llm" / "merged.safetensors")
    _untouched(ck, values)
    assert sorted(p.name for p in (tmp_path / "llm").iterdir() if p.name.startswith(".")) == []


def test_a_destination_that_is_not_a_regular_file_is_refused_before_anything_is_written(shards, tmp_path):
    ck, _ = shards
    os.mkfifo(tmp_path / "pipe.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        merge(ck, tmp_path / "pipe.safetensors", overwrite=True)
    if os.path.exists("/dev/full"):
        before = sorted(os.listdir("/dev"))
        with pytest.raises(CheckpointError, match="not a regular file"):
            merge(ck, "/dev/full", overwrite=True)
        assert sorted(os.listdir("/dev")) == before  # no temporary folder made in /dev
    assert not any(p.name.endswith(".merging") for p in tmp_path.iterdir())


def test_leftovers_of_a_killed_merge_are_removed_by_the_next_one(shards, tmp_path):
    ck, values = shards
    dead = tmp_path / ".merged.safetensors.999999999.abc123.merging"  # no such process
    live = tmp_path / ".merged.safetensors.1.def456.merging"  # PID 1 is alive: a merge still running
    other = tmp_path / ".other.safetensors.999999999.abc123.merging"  # another destination's
    for folder in (dead, live, other):
        (folder / "out").mkdir(parents=True)
        (folder / "out" / "part.safetensors").write_bytes(b"x" * 1000)
    merged = merge(ck, tmp_path / "merged.safetensors")
    assert sorted(merged) == sorted(values)
    assert not dead.exists() and live.exists() and other.exists()
    assert clean_leftovers(str(tmp_path / "other.safetensors")) == [str(other)]
