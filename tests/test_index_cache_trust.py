"""The saved-index cache trusts only what this user wrote: entries planted by another user, left writable by
others, edited with their checksums recomputed, or not regular files are ignored (the checkpoint is walked);
a folder another user owns or can write is not used; clean-up removes only the cache's own files."""

from __future__ import annotations

import os
import time

import pytest

from ms_notebook.checkpoint import index_cache
from ms_notebook.checkpoint.formats import ckpt as ckpt_format
from ms_notebook.checkpoint.formats import window
from tests.bounded_child import run_bounded
from tests.test_index_cache import _CountingOs, _join, _split, _wire_file, walked

OTHER_UID = 54321


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    monkeypatch.setattr(index_cache, "SETTLE_S", 0.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "index-cache"
    monkeypatch.setenv("MS_NOTEBOOK_INDEX_CACHE", str(folder))
    return folder


@pytest.fixture
def reads(monkeypatch) -> _CountingOs:
    counting = _CountingOs()
    monkeypatch.setattr(window, "os", counting)
    return counting


def _saved(tmp_path, monkeypatch):
    """A checkpoint, its walked index, and its saved index's bytes (as this user wrote them)."""
    path = _wire_file(tmp_path)
    reference = walked(path, monkeypatch)
    ckpt_format.read_index(str(path))
    saved = index_cache.cache_file(str(path))
    return path, reference, saved


def _evil(data: bytes, key: bytes | None = None) -> bytes:
    """The same index with every name renamed EVIL.*, packed again (with ``key``, or the user's own)."""
    header, arrays, names = _split(data)
    return _join(header, arrays, [f"EVIL.{i:04d}.weight" for i in range(len(names))], key)


def _walks(path, reference, reads) -> None:
    reads.preads = 0
    assert ckpt_format.read_index(str(path)) == reference
    assert reads.preads > 0  # walked: the saved index was not used


def test_an_edited_entry_with_recomputed_checksums_is_ignored(tmp_path, cache, reads, monkeypatch):
    path, reference, saved = _saved(tmp_path, monkeypatch)
    saved.write_bytes(_evil(saved.read_bytes(), key=os.urandom(32)))  # anyone's key but this user's
    _walks(path, reference, reads)
    assert not any(e.name.startswith("EVIL") for e in ckpt_format.read_index(str(path)).entries)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_another_user_owns_is_ignored_even_if_correctly_signed(tmp_path, cache, reads, monkeypatch):
    path, reference, saved = _saved(tmp_path, monkeypatch)
    saved.write_bytes(_evil(saved.read_bytes()))
    os.chown(saved, OTHER_UID, OTHER_UID)
    _walks(path, reference, reads)


def test_a_group_writable_entry_is_ignored(tmp_path, cache, reads, monkeypatch):
    path, reference, saved = _saved(tmp_path, monkeypatch)
    saved.write_bytes(_evil(saved.read_bytes()))
    saved.chmod(0o660)
    _walks(path, reference, reads)


def test_a_folder_others_can_write_is_not_used(tmp_path, cache, reads, monkeypatch):
    path, reference, saved = _saved(tmp_path, monkeypatch)
    cache.chmod(0o777)
    _walks(path, reference, reads)
    saved.unlink()
    ckpt_format.read_index(str(path))
    assert not saved.exists()  # nothing saved there either


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_another_user_owns_is_not_used(tmp_path, cache, reads, monkeypatch):
    path, reference, _ = _saved(tmp_path, monkeypatch)
    os.chown(cache, OTHER_UID, OTHER_UID)
    _walks(path, reference, reads)


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_fifo_or_link_planted_as_an_entry_is_never_followed(tmp_path, cache, monkeypatch, kind):
    path, reference, saved = _saved(tmp_path, monkeypatch)
    good = saved.read_bytes()
    saved.unlink()
    if kind == "fifo":
        os.mkfifo(saved)
    else:
        (tmp_path / "elsewhere.idx").write_bytes(good)
        saved.symlink_to(tmp_path / "elsewhere.idx")
    result = run_bounded(
        "from ms_notebook.checkpoint.formats import ckpt\n"
        f"_report(lambda: len(ckpt.read_index({str(path)!r}).entries))\n",
        timeout_s=30, MS_NOTEBOOK_INDEX_CACHE=str(cache),
    )
    assert result == {"outcome": "ok", "value": len(reference.entries)}


def test_clean_up_removes_only_the_caches_own_files(tmp_path, cache, monkeypatch):
    cache.mkdir(mode=0o700)
    old = time.time() - 3 * 86400
    unrelated = ["notes.idx", "x.tmp", ".backup.tmp", "ABCDEF0123456789ABCDEF0123456789.idx", "keep.txt"]
    for name in unrelated:
        (cache / name).write_text("mine, not the cache's")
        os.utime(cache / name, (old, old))
    ours_left = cache / ".msnb-abcd1234.tmp"  # a killed save's temporary
    ours_left.write_bytes(b"partial")
    os.utime(ours_left, (old, old))
    monkeypatch.setattr(index_cache, "MAX_FILES", 1)
    paths = []
    for i in range(3):
        folder = tmp_path / f"f{i}"
        folder.mkdir()
        paths.append(_wire_file(folder))
        ckpt_format.read_index(str(paths[-1]))
    assert all((cache / name).read_text() == "mine, not the cache's" for name in unrelated)
    assert not ours_left.exists()
    expected = [index_cache.cache_file(str(paths[-1])), *(cache / n for n in unrelated if n.endswith(".idx"))]
    assert sorted(cache.glob("*.idx")) == sorted(expected)  # MAX_FILES=1: only our own older entries went


def test_the_secret_is_private_and_a_foreign_one_disables_the_cache(tmp_path, cache, reads, monkeypatch):
    path, reference, _ = _saved(tmp_path, monkeypatch)
    secret = cache / index_cache.SECRET
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    secret.chmod(0o644)  # readable by others: no longer a secret
    _walks(path, reference, reads)
