"""Remote checkpoints against real servers on 127.0.0.1: nginx (HTTP, Range as production servers answer it),
moto's S3-compatible server through s3fs, and a proxy in front of nginx that injects faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

from ms_notebook.checkpoint import CheckpointError, CheckpointSet, open_checkpoint  # noqa: E402
from ms_notebook.transfer.merge import merge  # noqa: E402
from tests.ckpt_wire import write_ckpt, write_safetensors  # noqa: E402
from tests.remote_servers import FaultProxy, moto_s3, nginx, s3_env, s3_options  # noqa: E402
from tests.set_support import EXTRA, OMIT, rich_set, write_rank_set  # noqa: E402

DTYPES = ["float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool_"]
ROOT = Path(__file__).resolve().parent.parent


def _model_params(layers: int = 60) -> list[dict]:
    """A layered model with optimizer moments, a step counter and a string: 300+ entries of 32 KB tensors
    (jumps over tensor bytes, so the walk predicts and prefetches headers) and small biases."""
    rng = np.random.default_rng(1)
    params = []
    for i in range(layers):
        for name, shape in (("weight", (64, 128)), ("bias", (64,))):
            data = rng.standard_normal(shape).astype(np.float32)
            params.append({"name": f"layers.{i}.{name}", "data": ms.Tensor(data)})
            params.append({"name": f"moments.layers.{i}.{name}", "data": ms.Tensor(data * 0.1)})
    params.append({"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))})
    return params


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """Checkpoints of both formats (every dtype, a trained-model layout with a crc and a string value, a
    tag split over entries), a set of shards with its index, and malformed files."""
    www = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    dtypes = []
    for t in DTYPES:
        data = (rng.standard_normal((3, 5)) * 50).astype(np.float32)
        dtypes.append({"name": f"layer.{t}", "data": ms.Tensor(data).astype(getattr(ms, t))})
    for fmt in ("ckpt", "safetensors"):
        ms.save_checkpoint(dtypes, str(www / f"dtypes.{fmt}"), format=fmt)
        ms.save_checkpoint(_model_params(), str(www / f"model.{fmt}"), format=fmt, crc_check=True)
    ms.save_checkpoint(_model_params(2), str(www / "small.ckpt"), append_dict={"note": "remote", "epoch": 3})
    write_ckpt(www / "split.ckpt", [("w", [4], "Float32", np.arange(2, dtype=np.float32).tobytes()),
                                    ("w", [4], "Float32", np.arange(2, 4, dtype=np.float32).tobytes()),
                                    ("b", [2], "Int32", np.arange(2, dtype=np.int32).tobytes())])  # fmt: skip
    shards = {}
    for k in range(1, 4):
        name = f"model-{k:05d}-of-00003.safetensors"
        tensors = {f"blocks.{k}.{j}.w": ("F32", [8, 4], rng.standard_normal(32).astype("<f4").tobytes())
                   for j in range(5)}  # fmt: skip
        write_safetensors(www / name, tensors)
        shards.update(dict.fromkeys(tensors, name))
    (www / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"n": 3}, "weight_map": shards})
    )
    (www / "broken.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    good = (www / "small.ckpt").read_bytes()
    (www / "bad-truncated.ckpt").write_bytes(good[: len(good) // 2])
    (www / "bad-flipped.ckpt").write_bytes(good[:5] + b"\xff\xff\xff\xff\x0f" + good[10:])
    (www / "bad-empty.ckpt").write_bytes(b"")
    (www / "bad-text.ckpt").write_bytes(b"hello, this is not a checkpoint\n" * 4)
    st = (www / "dtypes.safetensors").read_bytes()
    (www / "bad-header.safetensors").write_bytes((len(st) * 2).to_bytes(8, "little") + st[8:])
    many = {f"model.layers.{i}.w": ("F16", [2], bytes(4)) for i in range(4000)}  # a ~250 KB header
    write_safetensors(www / "big-header.safetensors", many)
    (www / "bad-encrypted.ckpt").write_bytes(b"\xd8\x5e\x3a\x7f" + bytes(64))
    fulls, layouts = rich_set()
    write_rank_set(www / "run", fulls, layouts, ranks=8, extra=EXTRA, omit=OMIT)
    return www


@pytest.fixture(scope="module")
def http(zoo, tmp_path_factory) -> str:
    with nginx(zoo, tmp_path_factory.mktemp("nginx")) as base:
        yield base


@pytest.fixture(scope="module")
def s3(zoo, tmp_path_factory) -> tuple[str, dict]:
    import s3fs

    s3_env()
    with moto_s3(tmp_path_factory.mktemp("moto")) as endpoint:
        options = s3_options(endpoint)
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        fs.mkdir("zoo")
        for p in sorted(zoo.rglob("*")):
            if p.is_file():
                fs.put(str(p), f"zoo/{p.relative_to(zoo).as_posix()}")
        yield "s3://zoo", options, fs


def _remote(kind: str, http: str, s3: tuple, name: str):
    if kind == "http":
        return open_checkpoint(f"{http}/{name}")
    return open_checkpoint(f"{s3[0]}/{name}", storage_options=s3[1])


def _same(local, remote) -> None:
    assert list(remote) == list(local)
    assert remote.format == local.format and remote.metadata == local.metadata
    assert remote.file_size == local.file_size and remote.has_crc == local.has_crc
    assert remote.to_dataframe().equals(local.to_dataframe())
    for name in local:
        a, b = local[name], remote[name]
        if isinstance(a, str):
            assert a == b
            continue
        assert a.dtype == b.dtype and a.shape == b.shape
        assert (
            np.ascontiguousarray(a).view(np.uint8).tobytes()
            == np.ascontiguousarray(b).view(np.uint8).tobytes()
        )


@pytest.mark.parametrize("kind", ["http", "s3"])
@pytest.mark.parametrize(
    "name",
    ["dtypes.ckpt", "dtypes.safetensors", "model.ckpt", "model.safetensors", "small.ckpt", "split.ckpt",
     "big-header.safetensors"],
)  # fmt: skip
def test_every_entry_and_value_equals_the_local_file(zoo, http, s3, kind, name):
    local = open_checkpoint(zoo / name)
    remote = _remote(kind, http, s3, name)
    _same(local, remote)
    numeric = [n for n in local if local.info(n).kind == "tensor" and local.info(n).dtype != "Bool"]
    for n in numeric[:4]:
        assert remote.stats(n, chunk_elements=7) == local.stats(n, chunk_elements=7)  # chunked reads by range
        assert np.array_equal(remote.preview(n, 5), local.preview(n, 5))
    if local.has_crc:
        remote.verify()
    assert remote.remote["url"].endswith(name) and remote.remote["requests"] >= 1


def test_safetensors_header_is_one_request_and_the_ckpt_walk_stays_small(http, zoo):
    st = open_checkpoint(f"{http}/model.safetensors")
    assert st.remote["requests"] == 1
    assert open_checkpoint(f"{http}/big-header.safetensors").remote["requests"] == 2  # a header over 100 KB
    os.environ["MS_NOTEBOOK_INDEX_CACHE"], saved = "off", os.environ.get("MS_NOTEBOOK_INDEX_CACHE", "")
    try:
        ck = open_checkpoint(f"{http}/model.ckpt")
    finally:
        os.environ["MS_NOTEBOOK_INDEX_CACHE"] = saved
    size = (zoo / "model.ckpt").stat().st_size
    # 241 entries: far fewer round trips than entries (predicted headers are fetched together, runs of small
    # entries in one range) and a fraction of the file
    assert ck.remote["round_trips"] < len(ck) / 5
    assert ck.remote["bytes"] < size / 2


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_a_shard_index_url_opens_the_set_with_one_request_per_shard(zoo, http, s3, kind):
    local = open_checkpoint(zoo / "model.safetensors.index.json")
    remote = _remote(kind, http, s3, "model.safetensors.index.json")
    assert isinstance(remote, CheckpointSet) and remote.kind == "shards"
    _same(local, remote)
    assert remote.remote["requests"] == 1 + 3
    assert remote.notes[0] == local.notes[0]


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_a_folder_url_of_rank_files_is_assembled_like_the_local_folder(zoo, http, s3, kind):
    local = open_checkpoint(zoo / "run")
    remote = _remote(kind, http, s3, "run/")
    assert isinstance(remote, CheckpointSet) and remote.kind == "ranks"
    _same(local, remote)  # sliced values assembled from ranged reads of 8 rank files
    assert {r: os.path.basename(f.file) for r, f in remote.rank_files.items()} == {
        r: os.path.basename(f.file) for r, f in local.rank_files.items()
    }
    assert [s.box for s in remote.slices("block.weight")] == [s.box for s in local.slices("block.weight")]
    assert remote.strategy[0].endswith("/run/strategy.ckpt")
    with pytest.raises(CheckpointError, match="download the set first"):
        merge(remote, zoo / "never-written.ckpt")
    assert not (zoo / "never-written.ckpt").exists()


def test_a_rank_folder_url_with_a_strategy_url(zoo, http):
    local = open_checkpoint(zoo / "run", strategy=zoo / "run" / "strategy.ckpt")
    remote = open_checkpoint(f"{http}/run", strategy=f"{http}/run/strategy.ckpt")
    _same(local, remote)
    with pytest.raises(CheckpointError, match="holds no rank_N folders"):
        open_checkpoint(f"{http}/", strategy=f"{http}/run/strategy.ckpt")


def test_a_missing_shard_is_named_as_locally(zoo, http):
    with pytest.raises(CheckpointError) as local:
        open_checkpoint(zoo / "broken.safetensors.index.json")
    with pytest.raises(CheckpointError) as remote:
        open_checkpoint(f"{http}/broken.safetensors.index.json")
    assert remote.value.problem == local.value.problem
    assert remote.value.path == f"{http}/broken.safetensors.index.json"


@pytest.mark.parametrize("kind", ["http", "s3"])
@pytest.mark.parametrize(
    "name",
    ["bad-truncated.ckpt", "bad-flipped.ckpt", "bad-empty.ckpt", "bad-text.ckpt", "bad-header.safetensors",
     "bad-encrypted.ckpt"],
)  # fmt: skip
def test_malformed_remote_files_give_the_local_errors(zoo, http, s3, kind, name):
    with pytest.raises(CheckpointError) as local:
        open_checkpoint(zoo / name)
    with pytest.raises(CheckpointError) as remote:
        _remote(kind, http, s3, name)
    assert remote.value.problem == local.value.problem
    assert remote.value.path.endswith("/" + name) and "://" in remote.value.path


def test_reopening_an_unchanged_ckpt_costs_one_request_and_a_changed_one_is_walked_again(zoo, http):
    url = f"{http}/model.ckpt"
    first = open_checkpoint(url)
    again = open_checkpoint(url)
    assert again.remote["requests"] == 1
    _same(first, again)
    # replace the object (new bytes, new ETag): the saved index is not used
    path = zoo / "model.ckpt"
    backup = path.read_bytes()
    try:
        ms.save_checkpoint(_model_params(70), str(zoo / "model-new.ckpt"))
        os.replace(zoo / "model-new.ckpt", path)
        os.utime(path, (time.time() + 5, time.time() + 5))
        changed = open_checkpoint(url)
        assert changed.remote["requests"] > 1 and len(changed) == len(open_checkpoint(path)) != len(first)
        assert first.is_stale()
        with pytest.raises(CheckpointError, match="replaced while it was read"):
            first["layers.3.weight"]
    finally:
        path.chmod(0o644)
        path.write_bytes(backup)


def test_s3_object_replaced_after_opening_is_refused(s3):
    base, options, fs = s3
    ck = open_checkpoint(f"{base}/small.ckpt", storage_options=options)
    original = fs.cat_file("zoo/small.ckpt")
    try:
        fs.pipe("zoo/small.ckpt", original[:-4] + bytes(b ^ 0xFF for b in original[-4:]))
        with pytest.raises(CheckpointError, match="replaced") as err:
            ck["layers.1.weight"]
        assert err.value.path == f"{base}/small.ckpt"
    finally:
        fs.pipe("zoo/small.ckpt", original)


def test_s3_missing_object_is_named(s3):
    with pytest.raises(CheckpointError, match="not found") as err:
        open_checkpoint(f"{s3[0]}/nothing.ckpt", storage_options=s3[1])
    assert err.value.path == f"{s3[0]}/nothing.ckpt"


# --- faults, through a proxy in front of nginx -------------------------------------------------------------


@pytest.fixture
def proxy(http):
    host, port = http.split("//")[1].split(":")
    with FaultProxy((host, int(port))) as p:
        yield p


FAST = {"timeout": 1.0, "retries": 2}


@pytest.mark.parametrize(
    ("status", "problem"), [(404, "not found (HTTP 404)"), (403, "access denied (HTTP 403)")]
)
def test_http_errors_are_named_with_the_url_without_credentials(proxy, status, problem):
    proxy.faults, proxy.status = 1000, status
    url = proxy.url("/small.ckpt").replace("http://", "http://alice:s3cret@") + "?X-Amz-Signature=abcdef"
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(url, storage_options=FAST)
    assert problem in err.value.problem
    assert "s3cret" not in str(err.value) and "abcdef" not in str(err.value) and "alice" not in str(err.value)
    assert err.value.path.startswith(proxy.url("/small.ckpt"))
    assert proxy.requests == 1  # not retried


def test_transient_errors_are_retried_with_backoff_then_named(proxy, zoo):
    proxy.faults, proxy.status = 2, 503
    ck = open_checkpoint(proxy.url("/small.ckpt"), storage_options=FAST)
    assert ck.remote["requests"] >= 3
    _same(open_checkpoint(zoo / "small.ckpt"), ck)
    proxy.faults = 1000
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=r"HTTP 503 .*gave up after 3 tries"):
        open_checkpoint(proxy.url("/dtypes.ckpt"), storage_options=FAST)
    assert time.monotonic() - t0 > 0.2  # it waited between tries


def test_a_silent_server_is_a_timeout(proxy):
    proxy.faults, proxy.silent_s = 1000, 3.0
    with pytest.raises(CheckpointError, match="timeout") as err:
        open_checkpoint(proxy.url("/small.ckpt"), storage_options={"timeout": 0.5, "retries": 1})
    assert err.value.path == proxy.url("/small.ckpt")


def test_a_connection_reset_mid_transfer_is_retried_then_named(proxy, zoo):
    ck = open_checkpoint(proxy.url("/model.safetensors"), storage_options=FAST)
    local = open_checkpoint(zoo / "model.safetensors")
    proxy.faults, proxy.reset_after = 1, 1000
    assert np.array_equal(ck["layers.5.weight"], local["layers.5.weight"])  # 32 KB: reset once, then read
    proxy.faults = 1000
    with pytest.raises(CheckpointError, match=r"reset|closed") as err:
        ck["layers.6.weight"]
    assert "gave up after 3 tries" in err.value.problem and err.value.path == proxy.url("/model.safetensors")


def test_a_server_ignoring_range_is_stopped_not_downloaded(proxy):
    proxy.strip_range = True
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="ignores Range requests") as err:
        open_checkpoint(proxy.url("/model.ckpt"), storage_options=FAST)
    assert "stopped rather than download" in err.value.problem
    assert proxy.requests == 1 and time.monotonic() - t0 < 5


@pytest.fixture
def s3_proxy(s3):
    endpoint = s3[1]["client_kwargs"]["endpoint_url"]
    host, port = endpoint.split("//")[1].split(":")
    with FaultProxy((host, int(port))) as p:
        yield p, s3_options(p.url(), timeout=2.0, retries=2)


def test_s3_faults_are_named_and_retried(s3_proxy, zoo):
    proxy, options = s3_proxy
    proxy.faults, proxy.status = 2, 503
    ck = open_checkpoint("s3://zoo/small.ckpt", storage_options=options)
    _same(open_checkpoint(zoo / "small.ckpt"), ck)
    assert ck.remote["requests"] >= 3
    proxy.faults, proxy.status = 0, None
    proxy.strip_range = True
    with pytest.raises(CheckpointError, match="ignores Range requests") as err:
        open_checkpoint("s3://zoo/model.ckpt", storage_options=options)
    assert err.value.path == "s3://zoo/model.ckpt" and "stopped rather than download" in err.value.problem


def test_any_other_fsspec_filesystem_reads_by_range(zoo):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/zoo/model.safetensors", (zoo / "model.safetensors").read_bytes())
    fs.pipe("/zoo/small.ckpt", (zoo / "small.ckpt").read_bytes())
    try:
        for name in ("model.safetensors", "small.ckpt"):
            remote = open_checkpoint(f"memory://zoo/{name}")
            _same(open_checkpoint(zoo / name), remote)
        with pytest.raises(CheckpointError, match="not found") as err:
            open_checkpoint("memory://zoo/absent.ckpt")
        assert err.value.path == "memory://zoo/absent.ckpt"
    finally:
        fs.rm("/zoo", recursive=True)


def test_a_server_answering_more_than_asked_for_is_stopped(proxy):
    proxy.widen_range = True
    with pytest.raises(
        CheckpointError, match=r"answered bytes 'bytes 0-\d+/\d+' to a request for bytes 0\.\.102400"
    ):
        open_checkpoint(proxy.url("/model.ckpt"), storage_options=FAST)


def test_cli_inspects_a_url(http):
    out = subprocess.run(
        [sys.executable, "-m", "ms_notebook", "inspect", f"{http}/model.safetensors.index.json", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    data = json.loads(out.stdout)
    assert data["path"] == f"{http}/model.safetensors.index.json" and data["remote"]["requests"] == 4
    assert data["set"]["kind"] == "shards" and data["num_params"] == 3 * 5 * 32
    text = subprocess.run(
        [sys.executable, "-m", "ms_notebook", "inspect", f"{http}/small.ckpt", "--depth", "1",
         "--storage-option", "retries=1", "--storage-option", 'headers={"X-Test": "1"}'],
        capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout  # fmt: skip
    assert "small.ckpt" in text and f"listed from {http}/small.ckpt with" in text


def test_browser_header_says_where_it_is_and_what_listing_cost(http, zoo):
    from ms_notebook.widgets.browser import CheckpointBrowser

    ck = open_checkpoint(f"{http}/model.safetensors")
    browser = CheckpointBrowser(ck)
    header = browser.header.value
    assert f"remote: {http}/model.safetensors" in header and "listed with 1 request," in header
    local = CheckpointBrowser(open_checkpoint(zoo / "model.safetensors"))
    assert "remote:" not in local.header.value
    browser.select("layers.3.weight")  # details: statistics and histogram by range reads
    assert browser.static_html() and ck.is_described("layers.3.weight")
    rank_set = CheckpointBrowser(open_checkpoint(f"{http}/run/"))
    assert rank_set.merge is None and "per-rank files of a distributed run" in rank_set.header.value
