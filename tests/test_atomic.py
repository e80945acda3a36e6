"""Atomic writes: the target is either the old file or the whole new one, and no temporary file stays."""

from __future__ import annotations

import pytest

from ms_notebook.atomic import TEMPORARY_PREFIX, replacing, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("the writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_interrupted_write_of_a_new_file_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "new.ckpt"
    with pytest.raises(KeyboardInterrupt), replacing(target, suffix=".ckpt") as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(TEMPORARY_PREFIX)
        assert tmp.name.endswith("new.ckpt.ckpt")
        tmp.write_bytes(b"x")
        raise KeyboardInterrupt
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_a_writer_that_never_creates_the_file_fails_without_touching_the_target(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("kept")
    with pytest.raises(FileNotFoundError), replacing(target):
        pass  # nothing written under the temporary name: the rename cannot happen
    assert target.read_text() == "kept"


def test_write_text_replaces_the_whole_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("a much longer old content than the new one")
    assert write_text(target, "{}") == target
    assert target.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
