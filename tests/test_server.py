"""The server extension against a real Jupyter server in a subprocess, on checkpoints MindSpore wrote.

The server runs with ``import mindspore`` made to fail, so every test here also proves the server side never
needs MindSpore.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from tests.ckpt_wire import write_ckpt
from tests.servers import jupyter_env, jupyter_server

DEEP = ".".join(["a"] * 20_000)  # a 40 KB dotted name
BIG = 6 << 20  # float32 elements of the big tensor: 24 MB, over the server's big-statistics threshold
SLOW = 24 << 20  # bfloat16 elements (48 MB) of a tensor whose statistics keep the big pool busy

BLOCK_MINDSPORE = """
import sys
class _NoMindSpore:
    def find_spec(self, name, path=None, target=None):
        if name == "mindspore" or name.startswith("mindspore."):
            raise ImportError("mindspore is blocked in this test server")
        return None
sys.meta_path.insert(0, _NoMindSpore())
from jupyter_server.serverapp import main
sys.exit(main())
"""


@dataclass
class Server:
    url: str
    token: str
    root: Path
    outside: Path
    log: Path

    def get(self, endpoint: str, token: str | None = "default", **query: str) -> tuple[int, dict]:
        """GET /ms-notebook/<endpoint>?query; return (status, JSON body)."""
        url = f"{self.url}/ms-notebook/{endpoint}?{urllib.parse.urlencode(query)}"
        headers = {}
        if token is not None:
            headers["Authorization"] = f"token {self.token if token == 'default' else token}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                return err.code, json.loads(body)
            except json.JSONDecodeError:
                return err.code, {"raw": body.decode("utf-8", "replace")}


def _write_checkpoints(root: Path, outside: Path) -> None:
    import mindspore as ms
    from mindspore import nn

    class Small(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.block1 = nn.SequentialCell([nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)])
            self.head = nn.Dense(16, 3)

        def construct(self, x):
            return self.head(self.block1(x).mean(axis=(2, 3)).tile((1, 4)))

    net = Small()
    ms.save_checkpoint(net, str(root / "small.ckpt"), append_dict={"epoch_num": 3})
    ms.save_checkpoint(net, str(root / "small.safetensors"), format="safetensors")
    (root / "sub").mkdir()
    ms.save_checkpoint(net, str(root / "sub" / "nested.ckpt"))
    ms.save_checkpoint(net, str(root / ".hidden.ckpt"))
    (root / ".secret").mkdir()
    ms.save_checkpoint(net, str(root / ".secret" / "inside.ckpt"))
    many = [
        {"name": f"layers.{i // 100}.w{i % 100}", "data": ms.Tensor(np.full((2,), i, np.float32))}
        for i in range(10_000)
    ]
    ms.save_checkpoint(many, str(root / "many.ckpt"))
    ms.save_checkpoint(net, str(outside / "elsewhere.ckpt"))
    (root / "link_out.ckpt").symlink_to(outside / "elsewhere.ckpt")
    (root / "link_in.ckpt").symlink_to(root / "small.ckpt")
    rng = np.random.default_rng(0)
    (root / "garbage.ckpt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "empty.ckpt").write_bytes(b"")
    (root / "notes.txt").write_text("not a checkpoint")
    huge = np.array([1.7e308, -1.7e308, 1.0e308, 3.0], np.float64)
    bf = np.array([1.0, np.nan, -2.0, np.inf], np.float32).astype(ml_dtypes.bfloat16)
    write_ckpt(root / "odd.ckpt", [
        ("huge", [4], "Float64", huge.tobytes()),
        ("dims40", [1] * 39 + [3], "Float32", np.array([1, 2, 3], np.float32).tobytes()),
        ("empty", [0, (1 << 63) - 1], "Float32", b""),
        ("bf", [4], "BFloat16", bf.tobytes()),
        ("allnan", [2], "Float32", np.array([np.nan, np.nan], np.float32).tobytes()),
        ("c", [2], "Complex64", np.array([3 + 4j, 0], np.complex64).tobytes()),
        ("note", [0], "str", "hé".encode("utf-32-le")),
    ])  # fmt: skip
    write_ckpt(root / "deep.ckpt", [(DEEP, [2], "Float32", np.array([1, 3], np.float32).tobytes())])
    write_ckpt(root / "big.ckpt", [
        ("big", [BIG], "Float32", np.arange(BIG, dtype=np.float32).tobytes()),
        ("tiny", [3], "Float32", np.array([1, 2, 3], np.float32).tobytes()),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    _write_checkpoints(root, outside)
    yield from serve(base, root, outside)


def serve(base: Path, root: Path, outside: Path) -> Iterator[Server]:
    """A Jupyter server on ``root`` with only our extension and MindSpore blocked; no traceback in its log."""
    log = base / "server.log"
    with jupyter_server(
        [sys.executable, "-c", BLOCK_MINDSPORE],
        root,
        jupyter_env(base),
        log,
        ["--ServerApp.jpserver_extensions={'ms_notebook': True}"],
    ) as (url, token):
        yield Server(url=url, token=token, root=root, outside=outside, log=log)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


# --- summary and tree -------------------------------------------------------------------------------------


def test_checkpoint_summary_matches_what_mindspore_saved(server: Server) -> None:
    import mindspore as ms

    from ms_notebook import open_checkpoint

    status, body = server.get("checkpoint", path="small.ckpt", limit="100")
    assert status == 200, body
    loaded = ms.load_checkpoint(str(server.root / "small.ckpt"))
    rows = body["entries"]["rows"]
    assert sorted(r[0] for r in rows) == sorted(loaded)
    tree_order = [i.name for i in open_checkpoint(server.root / "small.ckpt").tree_order()]
    assert [r[0] for r in rows] == tree_order  # as the tree shows them: natural order
    by_name = {r[0]: r for r in rows}
    for name, value in loaded.items():
        if isinstance(value, ms.Parameter):
            assert by_name[name][1] == list(value.shape)
            assert by_name[name][2] == str(value.dtype)
    assert body["format"] == "ckpt"
    assert body["file_size"] == (server.root / "small.ckpt").stat().st_size
    assert body["num_tensors"] == len(loaded)
    weights = [v for n, v in loaded.items() if n != "epoch_num"]
    assert body["num_params"] == sum(int(np.prod(v.shape)) for v in weights)
    assert body["groups"]["extra"]["tensors"] == 1  # epoch_num from append_dict
    top = [child["name"] for child in body["tree"]["children"]]
    assert top == ["block1", "epoch_num", "head"]


def test_safetensors_summary_lists_the_same_tensors_as_the_ckpt(server: Server) -> None:
    _, ckpt = server.get("checkpoint", path="small.ckpt")
    status, st = server.get("checkpoint", path="small.safetensors")
    assert status == 200, st
    assert st["format"] == "safetensors"
    assert sorted(r[0] for r in st["entries"]["rows"]) == sorted(
        r[0] for r in ckpt["entries"]["rows"] if r[0] != "epoch_num"
    )


def test_tree_depth_and_prefix_cut_the_tree(server: Server) -> None:
    _, shallow = server.get("checkpoint", path="small.ckpt", depth="0")
    assert shallow["tree"]["children"] == []
    assert shallow["tree"]["more_children"] == 3  # block1, head, epoch_num
    status, sub = server.get("checkpoint", path="small.ckpt", prefix="head", depth="1")
    assert status == 200
    assert sub["tree"]["path"] == "head"
    assert sorted(c["name"] for c in sub["tree"]["children"]) == ["bias", "weight"]
    status, _ = server.get("checkpoint", path="small.ckpt", prefix="no.such.block")
    assert status == 404


def test_ten_thousand_tensors_come_back_paged_and_filtered(server: Server) -> None:
    status, body = server.get("checkpoint", path="many.ckpt")
    assert status == 200
    page = body["entries"]
    assert page["total"] == 10_000
    assert len(page["rows"]) == page["limit"] == 1000
    (layers,) = body["tree"]["children"]  # depth 1: the top level only, its 100 children counted, not sent
    assert layers["name"] == "layers" and layers["children"] == [] and layers["more_children"] == 100
    _, second = server.get("checkpoint", path="many.ckpt", offset="1000", limit="10")
    assert [r[0] for r in second["entries"]["rows"]] == [f"layers.10.w{i}" for i in range(10)]
    _, filtered = server.get("checkpoint", path="many.ckpt", filter="layers.42.w9")
    names = [r[0] for r in filtered["entries"]["rows"]]
    assert names == ["layers.42.w9", *[f"layers.42.w9{i}" for i in range(10)]]
    _, huge = server.get("checkpoint", path="many.ckpt", limit="100000", depth="5")
    assert len(huge["entries"]["rows"]) == 5000  # capped
    assert len(huge["tree"]["children"][0]["children"]) == 100
    blocks = huge["tree"]["children"][0]["children"]
    shown = sum(len(block["children"]) for block in blocks)
    assert shown < 2000 and blocks[-1]["children"] == [] and blocks[-1]["more_children"] == 100
    assert len(json.dumps(huge)) < 1_000_000


# --- one tensor ---------------------------------------------------------------------------------------------


def test_tensor_statistics_histogram_and_preview_match_the_values(server: Server) -> None:
    import mindspore as ms

    value = ms.load_checkpoint(str(server.root / "small.ckpt"))["head.weight"].asnumpy().astype(np.float64)
    status, body = server.get("tensor", path="small.ckpt", name="head.weight", bins="10")
    assert status == 200, body
    assert body["shape"] == [3, 16] and body["dtype"] == "Float32" and body["group"] == "weights"
    stats = body["stats"]
    assert stats["count"] == value.size
    assert stats["mean"] == pytest.approx(value.mean(), rel=1e-9, abs=1e-12)
    assert stats["std"] == pytest.approx(value.std(), rel=1e-9, abs=1e-12)
    assert stats["min"] == pytest.approx(value.min()) and stats["max"] == pytest.approx(value.max())
    counts, edges = np.histogram(value, bins=10, range=(value.min(), value.max()))
    assert body["histogram"]["counts"] == counts.tolist()
    assert body["histogram"]["edges"] == pytest.approx(edges.tolist())
    assert body["preview"] == pytest.approx(value.reshape(-1)[:16].tolist(), rel=1e-6)


def test_appended_scalar_has_stats_and_unknown_name_is_404(server: Server) -> None:
    status, body = server.get("tensor", path="small.ckpt", name="epoch_num")
    assert status == 200, body
    assert body["group"] == "extra" and body["stats"]["max"] == 3
    status, body = server.get("tensor", path="small.ckpt", name="no.such.tensor")
    assert status == 404
    assert "no.such.tensor" in body["message"]
    status, _ = server.get("tensor", path="small.ckpt")
    assert status == 400


# --- security and bad input --------------------------------------------------------------------------------


def test_requests_without_a_valid_token_are_refused(server: Server) -> None:
    for endpoint, query in (("checkpoint", {}), ("tensor", {"name": "head.weight"})):
        status, _ = server.get(endpoint, token=None, path="small.ckpt", **query)
        assert status == 403
        status, _ = server.get(endpoint, token="wrong", path="small.ckpt", **query)
        assert status == 403


def test_missing_and_hidden_files_are_404(server: Server) -> None:
    for path in ("nope.ckpt", ".hidden.ckpt", ".secret/inside.ckpt", ".secret"):
        status, body = server.get("checkpoint", path=path)
        assert status == 404, (path, body)
        status, _ = server.get("tensor", path=path, name="head.weight")
        assert status == 404, path


@pytest.mark.parametrize(
    "path",
    ["../outside/elsewhere.ckpt", "sub/../../outside/elsewhere.ckpt", "link_out.ckpt"],
)
def test_paths_that_leave_the_root_are_refused(server: Server, path: str) -> None:
    status, body = server.get("checkpoint", path=path)
    assert status in (403, 404), body
    assert "epoch" not in json.dumps(body)


def test_absolute_paths_are_refused_even_inside_the_root(server: Server) -> None:
    for path in (str(server.outside / "elsewhere.ckpt"), str(server.root / "small.ckpt")):
        status, _ = server.get("checkpoint", path=path)
        assert status in (403, 404)


def test_symlink_inside_the_root_and_nested_paths_work(server: Server) -> None:
    assert server.get("checkpoint", path="link_in.ckpt")[0] == 200
    assert server.get("checkpoint", path="sub/nested.ckpt")[0] == 200


@pytest.mark.parametrize("path", ["garbage.ckpt", "empty.ckpt", "notes.txt"])
def test_malformed_files_answer_422_with_the_index_message(server: Server, path: str) -> None:
    from ms_notebook import CheckpointError, open_checkpoint

    with pytest.raises(CheckpointError) as expected:
        open_checkpoint(server.root / path)
    status, body = server.get("checkpoint", path=path)
    assert status == 422, body
    assert body["message"] == f"{path}: {expected.value.problem}"  # relative to the server root
    assert str(server.root) not in json.dumps(body)
    status, body = server.get("tensor", path=path, name="x")
    assert status == 422 and str(server.root) not in json.dumps(body)


def test_bad_numeric_arguments_are_400(server: Server) -> None:
    assert server.get("checkpoint", path="small.ckpt", limit="lots")[0] == 400
    assert server.get("tensor", path="small.ckpt", name="head.weight", bins="x")[0] == 400


def test_odd_but_legal_values_get_a_correct_answer_never_a_server_error(server: Server) -> None:
    def detail(name: str) -> dict:
        status, body = server.get("tensor", path="odd.ckpt", name=name, bins="4")
        assert status == 200, (name, body)
        return body

    huge = detail("huge")
    assert huge["stats"]["min"] == -1.7e308 and huge["stats"]["max"] == 1.7e308
    assert huge["stats"]["mean"] == pytest.approx((1.7e308 - 1.7e308 + 1.0e308 + 3.0) / 4)
    assert huge["histogram"]["counts"] == [1, 0, 1, 2] and None not in huge["histogram"]["edges"]
    dims40 = detail("dims40")
    assert len(dims40["shape"]) == 40 and dims40["stats"]["mean"] == 2.0 and dims40["preview"] == [1, 2, 3]
    empty = detail("empty")
    assert empty["shape"] == [0, (1 << 63) - 1] and empty["numel"] == 0 and empty["stats"]["count"] == 0
    assert empty["histogram"] is None and empty["preview"] == []
    bf = detail("bf")
    assert (bf["stats"]["nan_count"], bf["stats"]["inf_count"], bf["stats"]["mean"]) == (1, 1, -0.5)
    assert bf["preview"] == [1.0, "NaN", -2.0, "Infinity"]  # JSON has no NaN or Inf: told apart as text
    allnan = detail("allnan")
    assert allnan["stats"]["mean"] is None and allnan["histogram"] is None and "no finite" in allnan["note"]
    assert detail("c")["stats"]["max"] == 5.0  # complex: by magnitude
    assert detail("c")["preview"] == [[3.0, 4.0], [0.0, 0.0]]
    note = detail("note")
    assert note["preview"] == "hé" and note["stats"] is None
    status, body = server.get("checkpoint", path="odd.ckpt")
    assert status == 200 and body["num_tensors"] == 7


def test_a_forty_kilobyte_dotted_name_is_served(server: Server) -> None:
    status, body = server.get("checkpoint", path="deep.ckpt", depth="100", max_children="5")
    assert status == 200, body
    node, levels = body["tree"], 0
    while node.get("children"):
        node, levels = node["children"][0], levels + 1
    assert levels == 32 and node["path"] == DEEP and node["shape"] == [2]
    status, sub = server.get("checkpoint", path="deep.ckpt", prefix=".".join(["a"] * 31), depth="1")
    assert status == 200 and sub["tree"]["children"][0]["path"] == DEEP
    status, detail = server.get("tensor", path="deep.ckpt", name=DEEP)
    assert status == 200 and detail["stats"]["mean"] == 2.0


def test_a_tiny_tensor_is_answered_while_eight_big_statistics_run(server: Server) -> None:
    """Small requests have their own pool: the tiny one does not queue behind the big ones (timings are in
    benchmarks/bench_server.py; here only the order)."""
    done: dict[str, float] = {}
    bodies: dict[str, dict] = {}
    # four big tensors, each asked twice: another number of bins of one tensor comes from its first pass
    data = np.arange(BIG, dtype=np.float32).tobytes()
    tiny = ("tiny", [3], "Float32", np.array([1, 2, 3], "f4").tobytes())
    write_ckpt(server.root / "big4.ckpt", [*((f"big{i}", [BIG], "Float32", data) for i in range(4)), tiny])

    def ask(key: str, name: str, bins: str) -> None:
        status, body = server.get("tensor", path="big4.ckpt", name=name, bins=bins)
        assert status == 200, body
        bodies[key] = body
        done[key] = time.monotonic()

    big = [threading.Thread(target=ask, args=(f"big{i}", f"big{i % 4}", str(11 + i))) for i in range(8)]
    for t in big:
        t.start()
    deadline = time.monotonic() + 120
    while not done and time.monotonic() < deadline:  # the first big one is done: the rest queue in the pool
        time.sleep(0.005)
    ask("tiny", "tiny", "40")
    for t in big:
        t.join(timeout=300)
    assert len(done) == 9
    assert done["tiny"] < max(done[f"big{i}"] for i in range(8))
    assert bodies["tiny"]["stats"]["mean"] == 2.0
    for i in range(8):
        assert sum(bodies[f"big{i}"]["histogram"]["counts"]) == BIG
        assert bodies[f"big{i}"]["stats"]["max"] == BIG - 1


def test_statistics_for_a_client_that_hung_up_are_dropped(server: Server) -> None:
    """A request whose client hangs up while it waits behind big statistics is dropped, not computed."""
    slow = (np.arange(SLOW, dtype=np.float32) % 1000).astype(ml_dtypes.bfloat16)  # bf16: the slow path
    # a tensor per blocker: another number of bins of one tensor comes from its first pass, not a new read
    names = ["slow", *(f"slow{i}" for i in range(1, 8))]
    data = slow.tobytes()
    write_ckpt(server.root / "slow.ckpt", ((name, [SLOW], "BFloat16", data) for name in names))
    host, port = server.url.removeprefix("http://").split(":")
    finished: list[float] = []

    def blocker(bins: int, name: str) -> None:
        status, _ = server.get("tensor", path="slow.ckpt", name=name, bins=str(bins))
        assert status == 200
        finished.append(time.monotonic())

    # the blockers read slow1 … slow7; the request that hangs up asks for "slow", which none of them reads
    blockers = [threading.Thread(target=blocker, args=(101 + i, names[1 + i % 7])) for i in range(8)]
    for t in blockers:  # the big pool is busy for a while: the next big request queues behind them
        t.start()
    deadline = time.monotonic() + 120
    while not finished and time.monotonic() < deadline:  # the first pass is done: six more queue behind
        time.sleep(0.002)
    query = urllib.parse.urlencode({"path": "slow.ckpt", "name": "slow", "bins": "97"})
    request = (f"GET /ms-notebook/tensor?{query} HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: token {server.token}\r\n\r\n")  # fmt: skip
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request.encode())
        time.sleep(0.05)  # hang up before the answer: the work is dropped, queued or between two chunks
    hung_up = time.monotonic()
    for t in blockers:
        t.join(timeout=300)
    assert max(finished) > hung_up  # the big pool really was busy when the client hung up
    deadline = time.monotonic() + 60
    while "dropped the statistics of 'slow'" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.2)
    status, body = server.get("tensor", path="slow.ckpt", name="slow", bins="97")  # computed afresh, complete
    assert status == 200 and sum(body["histogram"]["counts"]) == SLOW


# --- installation ------------------------------------------------------------------------------------------


def test_installed_extensions_are_enabled() -> None:
    jupyter = Path(sys.executable).with_name("jupyter")
    labext = subprocess.run([jupyter, "labextension", "list"], capture_output=True, text=True, timeout=120)
    text = labext.stdout + labext.stderr
    lines = text.splitlines()
    assert any("ms-notebook" in line and "enabled" in line and "OK" in line for line in lines), text
    serverext = subprocess.run(
        [jupyter, "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    text = serverext.stdout + serverext.stderr
    assert any("ms_notebook" in line and "enabled" in line for line in text.splitlines()), text


# --- kernel side of the tagged-cell contract ----------------------------------------------------------------


def test_frontend_helper_outside_a_kernel_stays_unavailable_and_sends_nothing() -> None:
    code = (
        "from ms_notebook.widgets import frontend\n"
        "frontend.probe()\n"
        "print(frontend.available(), frontend.request_run_tagged('ms-eval'), frontend.last_ran())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "None"]
