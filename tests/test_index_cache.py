"""A .ckpt indexed once is reopened from its saved index: the same index as the walk, never a wrong one.

Files are written by mindspore.save_checkpoint or in its wire layout (tests/ckpt_wire.py); each test has its
own cache folder. "Did not walk" is shown by counting the positioned reads of the checkpoint (os.preadv).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore.train import checkpoint_pb2  # noqa: E402

from ms_notebook.checkpoint import CheckpointError, index_cache, open_checkpoint  # noqa: E402
from ms_notebook.checkpoint.formats import ckpt as ckpt_format  # noqa: E402
from ms_notebook.checkpoint.formats import window  # noqa: E402
from tests.ckpt_wire import entry, write_ckpt  # noqa: E402

N = index_cache.MIN_ENTRIES + 22  # enough entries to be worth a saved index


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    """Files here are seconds old: saved at once (the rule for files changed just now has its own test)."""
    monkeypatch.setattr(index_cache, "SETTLE_S", 0.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "index-cache"
    monkeypatch.setenv("MS_NOTEBOOK_INDEX_CACHE", str(folder))
    return folder


class _CountingOs:
    """The window module's ``os``, counting positioned reads."""

    def __init__(self) -> None:
        self.preads = 0

    def preadv(self, *args):
        self.preads += 1
        return os.preadv(*args)

    def __getattr__(self, name):
        return getattr(os, name)


@pytest.fixture
def reads(monkeypatch) -> _CountingOs:
    counting = _CountingOs()
    monkeypatch.setattr(window, "os", counting)
    return counting


def walked(path, monkeypatch):
    """The index the walk gives, with the cache off."""
    with monkeypatch.context() as m:
        m.setenv("MS_NOTEBOOK_INDEX_CACHE", "off")
        return ckpt_format.read_index(str(path))


# --- files --------------------------------------------------------------------------------------------------


def _mindspore_file(tmp_path, crc_check: bool):
    rng = np.random.default_rng(0)
    dtypes = [ms.float32, ms.float16, ms.bfloat16, ms.int32, ms.int8, ms.bool_, ms.float64]
    params = []
    for i in range(N):
        shape = [(3, 5), (7,), (2, 2, 2), (1,)][i % 4]
        data = ms.Tensor((rng.standard_normal(shape) * 10).astype(np.float32)).astype(dtypes[i % len(dtypes)])
        params.append({"name": f"net.layers.{i // 6}.p{i % 6}", "data": data})
    path = tmp_path / f"ms{'-crc' if crc_check else ''}.ckpt"
    ms.save_checkpoint(params, str(path), crc_check=crc_check, append_dict={"note": "text ✓", "epoch_num": 3})
    return path


def _wire_file(tmp_path):
    """Split (multi-span) entries as MindSpore writes tensors over 512 MiB, a repeated non-consecutive name,
    a string, a dims-[0] scalar, among enough plain entries."""
    big = np.arange(60, dtype=np.float32)
    parts = [p.tobytes() for p in np.array_split(big, 3)]
    items = [(f"w.{i}", [4], "Float32", np.full(4, i, np.float32).tobytes()) for i in range(N)]
    items[10:10] = [("big", [6, 10], "Float32", part) for part in parts]
    items[50:50] = [("w.3", [2], "Int64", np.array([7, 8], np.int64).tobytes())]  # later value wins
    items.append(("label", [1], "str", "héllo".encode("utf-32-le")))
    items.append(("step", [0], "Int32", np.array([5], np.int32).tobytes()))
    return write_ckpt(tmp_path / "wire.ckpt", items)


def _maptensor_file(tmp_path):
    msg = checkpoint_pb2.Checkpoint()
    value = msg.value.add()
    value.tag = "embedding.table"
    for array in (np.arange(5, dtype=np.int64), np.ones((5, 3), np.float32), np.zeros(5, np.int32)):
        tensor = value.maptensor.tensor.add()
        tensor.dims.extend(array.shape)
        tensor.tensor_type = str(array.dtype)
        tensor.tensor_content = array.reshape(-1).tobytes()
    path = tmp_path / "map.ckpt"
    plain = b"".join(entry(f"dense.{i}", [2], "Float32", bytes(8)) for i in range(N))
    path.write_bytes(plain + msg.SerializeToString())
    return path


FILES = {
    "mindspore": lambda tmp_path: _mindspore_file(tmp_path, crc_check=False),
    "mindspore-crc": lambda tmp_path: _mindspore_file(tmp_path, crc_check=True),
    "wire-split-repeated-string": _wire_file,
    "maptensor": _maptensor_file,
}


def _assert_values_agree(path) -> None:
    ours = open_checkpoint(path)
    ref = ms.load_checkpoint(str(path))
    assert list(ours) == list(ref)
    for name, value in ref.items():
        got = ours[name]
        if isinstance(value, str):
            assert got == value
        else:
            expected = value.asnumpy()
            assert str(got.dtype) == str(expected.dtype) and got.shape == expected.shape  # two bfloat16 types
            assert got.tobytes() == expected.tobytes()


# --- reopening ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", FILES.values(), ids=FILES.keys())
def test_a_reopened_file_gets_the_walks_index_without_reading_the_checkpoint(
    tmp_path, cache, reads, make, monkeypatch
):
    path = make(tmp_path)
    reference = walked(path, monkeypatch)
    assert not cache.exists()  # the walk with the cache off saved nothing
    first = ckpt_format.read_index(str(path))
    assert first == reference
    assert index_cache.cache_file(str(path)).is_file()
    reads.preads = 0
    again = ckpt_format.read_index(str(path))
    assert reads.preads == 0  # not a byte of the checkpoint read: the saved index answered
    assert again == reference  # names, shapes, types, kinds, spans, byte counts, crc, stamps
    assert again.positions == reference.positions  # the name lookup the Checkpoint reuses
    assert [type(e.stored_spans) for e in again.entries] == [type(e.stored_spans) for e in reference.entries]
    # one object per distinct shape and type name, as the walk makes them
    assert len({id(e.ms_dtype) for e in again.entries}) == len({e.ms_dtype for e in again.entries})
    tensors = [e for e in again.entries if e.kind == "tensor"]
    assert len({id(e.shape) for e in tensors}) == len({e.shape for e in tensors})
    if make is not _maptensor_file:
        _assert_values_agree(path)


def test_the_counter_sees_the_walk_when_there_is_no_saved_index(tmp_path, cache, reads):
    """The zero above can fail: the same count on a first open is not zero."""
    path = _wire_file(tmp_path)
    ckpt_format.read_index(str(path))
    assert reads.preads > 0


def test_a_crc_checked_file_reopened_still_verifies(tmp_path, cache, reads):
    path = _mindspore_file(tmp_path, crc_check=True)
    open_checkpoint(path)
    reads.preads = 0
    ck = open_checkpoint(path)
    assert reads.preads == 1 and ck.has_crc  # open_checkpoint's 16-byte look at the format, no walk
    ck.verify()  # reads the file: its crc matches the one the saved index kept


def test_a_same_size_rewrite_with_its_mtime_put_back_is_walked_again(tmp_path, cache, reads, monkeypatch):
    path = write_ckpt(tmp_path / "a.ckpt", [(f"old.{i:03d}", [2], "Float32", bytes(8)) for i in range(N)])
    ckpt_format.read_index(str(path))
    before = os.stat(path)
    rewritten = b"".join(entry(f"new.{i:03d}", [2], "Float32", bytes(8)) for i in range(N))
    with open(path, "r+b") as f:  # same inode, same size
        f.write(rewritten)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    same = ("st_ino", "st_size", "st_mtime_ns")
    assert [getattr(after, k) for k in same] == [getattr(before, k) for k in same]
    reads.preads = 0
    index = ckpt_format.read_index(str(path))
    assert reads.preads > 0
    assert [e.name for e in index.entries] == [f"new.{i:03d}" for i in range(N)]
    assert index == walked(path, monkeypatch)


@pytest.mark.parametrize("change", ["truncated", "appended", "replaced"])
def test_a_file_changed_after_it_was_saved_gives_the_same_answer_as_without_a_cache(
    tmp_path, cache, monkeypatch, change
):
    path = _wire_file(tmp_path)
    ckpt_format.read_index(str(path))
    data = path.read_bytes()
    if change == "truncated":
        path.write_bytes(data[:-7])
    elif change == "appended":
        with open(path, "ab") as f:
            f.write(b"\x0a\x05junk")
    else:
        replacement = tmp_path / "other.ckpt"
        write_ckpt(replacement, [(f"x.{i}", [1], "Int8", b"\x01") for i in range(N)])
        os.replace(replacement, path)

    def outcome():
        try:
            return ckpt_format.read_index(str(path))
        except CheckpointError as exc:
            return str(exc)

    with monkeypatch.context() as m:
        m.setenv("MS_NOTEBOOK_INDEX_CACHE", "off")
        expected = outcome()
    assert outcome() == expected
    if change != "replaced":
        assert isinstance(expected, str)  # a CheckpointError, as before
    else:
        assert expected.entries[0].name == "x.0"


def test_a_failed_walk_saves_nothing(tmp_path, cache):
    path = write_ckpt(tmp_path / "bad.ckpt", [(f"w.{i}", [4], "Float32", bytes(12)) for i in range(N)])
    with pytest.raises(CheckpointError, match="claims shape"):
        ckpt_format.read_index(str(path))
    assert not index_cache.cache_file(str(path)).exists()


# --- saved indexes that cannot be trusted -------------------------------------------------------------------


def _split(data: bytes) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """A saved index's header, arrays and names (the layout of index_cache)."""
    start = len(index_cache.MAGIC) + 8
    length = int.from_bytes(data[len(index_cache.MAGIC) : start], "little")
    header = json.loads(data[start : start + length])
    body = data[start + length : -index_cache.MAC_BYTES]  # the HMAC trailer is left out
    arrays, pos = {}, 0
    for name, dtype, unit in index_cache._ARRAYS:
        count = header["entries"] if unit == "entries" else header["extra"]
        arrays[name] = np.frombuffer(body, dtype, count, pos).copy()
        pos += arrays[name].nbytes
    return header, arrays, body[pos:].decode().split("\0")


def _join(header: dict, arrays: dict[str, np.ndarray], names: list[str], key: bytes | None = None) -> bytes:
    """Pack a (changed) saved index again, signed with the user's own key (default): a lie only the checks
    can catch. Signed with another key it is what a planted or forged file looks like."""
    body = b"".join(np.asarray(arrays[n], d).tobytes() for n, d, _ in index_cache._ARRAYS)
    body += "\0".join(names).encode()
    text = json.dumps(header).encode()
    data = index_cache.MAGIC + len(text).to_bytes(8, "little") + text + body
    if key is None:
        key = index_cache.secret_key(index_cache.cache_dir(), create=False)
    return data + hmac.new(key, data, hashlib.sha256).digest()


def _lie(change):
    def damage(data: bytes) -> bytes:
        header, arrays, names = _split(data)
        change(header, arrays, names)
        return _join(header, arrays, names)

    return damage


def _offset_past_the_end(h, a, n):
    a["offset"][-1] = 10**9


def _nbytes_not_matching_the_shape(h, a, n):
    a["nbytes"][0] += 4
    a["offset"][0] -= 4


def _extra_spans_not_adding_up(h, a, n):
    a["extra"][1] += 4


def _one_span_too_many(h, a, n):
    a["spans"][np.flatnonzero(a["spans"] > 1)[0]] += 1


def _a_name_twice(h, a, n):
    n[1] = n[0]


def _a_name_missing(h, a, n):
    n.pop()


def _more_entries_than_arrays(h, a, n):
    h["entries"] += 1


def _a_shape_id_past_the_table(h, a, n):
    a["shape"][0] = len(h["shapes"])


def _another_shape(h, a, n):
    h["shapes"][a["shape"][0]] = [len(h["shapes"]) + 99]


def _a_string_with_a_shape(h, a, n):
    string = h["kinds"].index("str")
    a["shape"][np.flatnonzero(a["kind"] == string)[0]] = a["shape"][0]


def _an_unknown_kind(h, a, n):
    h["kinds"][0] = "pickle"


def _another_checkpoint(h, a, n):
    h["path"] = h["path"] + ".other"


def _another_version(h, a, n):
    h["version"] = index_cache.VERSION + 1


def _crc_end_past_the_file(h, a, n):
    h["crc_end"] += 1


DAMAGE = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: bytes(np.random.default_rng(1).integers(0, 256, len(data), np.uint8)),
    "bit-flip-in-body": lambda data: data[:-50] + bytes([data[-50] ^ 1]) + data[-49:],
    "bad-magic": lambda data: b"X" + data[1:],
    "header-not-json": lambda data: data[:20] + b"{" + data[21:],
    **{f.__name__.strip("_"): _lie(f) for f in (
        _offset_past_the_end, _nbytes_not_matching_the_shape, _extra_spans_not_adding_up, _one_span_too_many,
        _a_name_twice, _a_name_missing, _more_entries_than_arrays, _a_shape_id_past_the_table, _another_shape,
        _a_string_with_a_shape, _an_unknown_kind, _another_checkpoint, _another_version,
        _crc_end_past_the_file,
    )},
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_or_lying_saved_index_is_ignored_walked_and_saved_again(
    tmp_path, cache, reads, monkeypatch, damage
):
    path = _wire_file(tmp_path)
    reference = walked(path, monkeypatch)
    ckpt_format.read_index(str(path))
    saved = index_cache.cache_file(str(path))
    good = saved.read_bytes()
    repacked = index_cache._read(io.BytesIO(_join(*_split(good))), os.path.realpath(path), os.stat(path))
    assert repacked is not None  # packed again unchanged it is trusted: only the damage is refused
    saved.write_bytes(damage(good))
    reads.preads = 0
    assert ckpt_format.read_index(str(path)) == reference
    assert reads.preads > 0  # walked
    reads.preads = 0
    assert ckpt_format.read_index(str(path)) == reference
    assert reads.preads == 0  # the walk saved a good index again


# --- where, whether and how much ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "off", "none", "OFF", ""])
def test_the_environment_switches_the_cache_off(tmp_path, monkeypatch, reads, value):
    monkeypatch.setenv("MS_NOTEBOOK_INDEX_CACHE", value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _wire_file(tmp_path)
    first = ckpt_format.read_index(str(path))
    reads.preads = 0
    assert ckpt_format.read_index(str(path)) == first
    assert reads.preads > 0
    assert index_cache.cache_dir() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wire.ckpt"]


def test_without_the_variable_the_cache_is_under_xdg_cache_home_private(tmp_path, monkeypatch):
    monkeypatch.delenv("MS_NOTEBOOK_INDEX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = _wire_file(tmp_path)
    ckpt_format.read_index(str(path))
    folder = tmp_path / "xdg" / "ms-notebook" / "index"
    assert index_cache.cache_dir() == folder
    (saved,) = folder.glob("*.idx")
    assert saved == index_cache.cache_file(str(path))
    assert sorted(p.name for p in folder.iterdir()) == sorted([saved.name, index_cache.SECRET])
    assert folder.stat().st_mode & 0o777 == 0o700
    assert saved.stat().st_mode & 0o777 == 0o600
    assert (folder / index_cache.SECRET).stat().st_mode & 0o777 == 0o600
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert index_cache.cache_dir() == tmp_path / "home" / ".cache" / "ms-notebook" / "index"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG spec says
    assert index_cache.cache_dir() == tmp_path / "home" / ".cache" / "ms-notebook" / "index"
    monkeypatch.setenv("HOME", "")  # nowhere to keep it: no cache, never a folder under the working directory
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)  # as when no home directory can be found
    monkeypatch.chdir(tmp_path)
    assert index_cache.cache_dir() is None
    ckpt_format.read_index(str(path))
    assert not (tmp_path / "~").exists() and not (tmp_path / "relative").exists()


def test_an_unwritable_cache_folder_just_means_walking(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MS_NOTEBOOK_INDEX_CACHE", str(blocker / "cache"))  # mkdir fails, even as root
    path = _wire_file(tmp_path)
    assert ckpt_format.read_index(str(path)) == walked(path, monkeypatch)
    assert ckpt_format.read_index(str(path)) == walked(path, monkeypatch)
    assert blocker.read_text() == "not a folder"


def test_small_files_and_names_holding_nul_keep_no_saved_index(tmp_path, cache, monkeypatch):
    small = write_ckpt(tmp_path / "small.ckpt", [(f"w.{i}", [1], "Int8", b"\x01") for i in range(10)])
    nul = write_ckpt(tmp_path / "nul.ckpt", [(f"w\0{i}", [1], "Int8", b"\x01") for i in range(N)])
    for path in (small, nul):
        assert ckpt_format.read_index(str(path)) == walked(path, monkeypatch)
        assert not index_cache.cache_file(str(path)).exists()


def test_the_cache_folder_keeps_the_most_recently_used_files(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(index_cache, "MAX_FILES", 3)
    paths = [write_ckpt(tmp_path / f"f{i}.ckpt", [(f"w.{j}", [1], "Int8", b"\x01") for j in range(N)])
             for i in range(5)]  # fmt: skip
    for age, path in enumerate(paths):
        ckpt_format.read_index(str(path))
        saved = index_cache.cache_file(str(path))
        os.utime(saved, (1000 + age, 1000 + age))  # distinct ages, whatever the clock's resolution
    assert sorted(cache.glob("*.idx")) == sorted(index_cache.cache_file(str(p)) for p in paths[2:])
    ckpt_format.read_index(str(paths[2]))  # used again: now the most recent
    ckpt_format.read_index(str(paths[0]))  # saved again: f3, the least recently used, goes
    kept = (paths[0], paths[2], paths[4])
    assert sorted(cache.glob("*.idx")) == sorted(index_cache.cache_file(str(p)) for p in kept)
    monkeypatch.setattr(index_cache, "MAX_BYTES", 1)
    ckpt_format.read_index(str(paths[1]))
    assert list(cache.glob("*.idx")) == [index_cache.cache_file(str(paths[1]))]  # the one just saved stays


def test_a_file_changed_just_now_is_not_saved_until_it_settles(tmp_path, cache, monkeypatch, reads):
    """A rewrite within the file system's timestamp granularity keeps mtime and ctime: a file changed in the
    last SETTLE_S seconds is walked each time, and saved once it has settled."""
    path = _mindspore_file(tmp_path, crc_check=False)
    monkeypatch.setattr(index_cache, "SETTLE_S", 3600.0)
    open_checkpoint(path)
    assert not list(cache.glob("*" + index_cache.SUFFIX))
    before = reads.preads
    open_checkpoint(path)
    assert reads.preads > before  # walked again
    monkeypatch.setattr(index_cache, "SETTLE_S", 0.0)
    open_checkpoint(path)
    assert len(list(cache.glob("*" + index_cache.SUFFIX))) == 1
