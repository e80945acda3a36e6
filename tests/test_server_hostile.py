"""A real Jupyter server (MindSpore blocked, as in test_server.py) against hostile requests and files: a
catastrophic-backtracking filter, FIFOs where files should be, links out of the root, hidden files named by an
index. The server must keep answering other requests, and answer these with a 4xx naming the problem."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from tests.ckpt_wire import write_ckpt, write_safetensors
from tests.test_server import Server, serve

REDOS = r"/^([\w.]+)+Q$/"  # Python's re backtracks for minutes on a 30-character name


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server-hostile")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    one = np.ones(4, np.float32).tobytes()
    write_ckpt(root / "long.ckpt", [("a" * 30, [4], "Float32", one), ("b" * 40 + ".w", [4], "Float32", one)])
    write_ckpt(root / "swap.ckpt", [("old.w", [4], "Float32", one)])
    os.mkfifo(root / "pipe.ckpt")
    for i in range(6):  # more than the server's small pool: each used to hold a worker for good
        (root / f"fifo-set-{i}").mkdir()
        os.mkfifo(root / f"fifo-set-{i}" / "model.safetensors.index.json")
    # a root whose index is a link out of the root, holding a secret
    (outside / "secret.json").write_text(json.dumps({"weight_map": {"SECRET-CONTENT": "x.safetensors"}}))
    (root / "model.safetensors.index.json").symlink_to(outside / "secret.json")
    # an index that names a hidden shard
    (root / "hid").mkdir()
    write_safetensors(root / "hid" / ".hidden.safetensors", {"w": ("F32", [4], one)})
    (root / "hid" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": ".hidden.safetensors"}}))
    yield from serve(base, root, outside)


def _status_s(server: Server) -> float:
    """Seconds /api/status takes to answer (a tiny request that needs the event loop)."""
    request = urllib.request.Request(f"{server.url}/api/status",
                                     headers={"Authorization": f"token {server.token}"})
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - start


def test_a_backtracking_regex_filter_never_blocks_the_server(server: Server) -> None:
    answers: list[tuple[int, dict]] = []

    def ask() -> None:
        for _ in range(3):
            answers.append(server.get("checkpoint", path="long.ckpt", filter=REDOS, depth="0"))

    asker = threading.Thread(target=ask)
    asker.start()
    tiny = []
    while asker.is_alive() and len(tiny) < 50:
        tiny.append(_status_s(server))  # raises if one takes 30 s
    asker.join(timeout=60)
    assert not asker.is_alive(), "the filtered request never returned"
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(body["entries"]["rows"] == [] for _, body in answers)  # nothing ends in Q
    status, body = server.get("checkpoint", path="long.ckpt", filter=r"/^([\w.]+)+W$/", depth="0")
    assert status == 200 and [row[0] for row in body["entries"]["rows"]] == ["b" * 40 + ".w"]


@pytest.mark.parametrize("text", ["/(a)\\1/", "re:" + "a" * 2000, "/(?<=x)y/"])
def test_filters_re2_cannot_run_or_too_long_are_a_message(server: Server, text: str) -> None:
    status, body = server.get("checkpoint", path="long.ckpt", filter=text, depth="0")
    assert status == 200, body  # the viewer shows the message beside its filter box
    assert body.get("filter_error"), body
    assert "Traceback" not in body["filter_error"]


def test_fifos_where_files_should_be_are_422_and_the_pool_stays_free(server: Server) -> None:
    status, body = server.get("checkpoint", path="pipe.ckpt")
    assert status == 404, body  # the contents manager knows no such file
    for i in range(6):
        status, body = server.get("checkpoint", path=f"fifo-set-{i}")
        assert status == 422 and "FIFO" in body["message"], body
    status, body = server.get("checkpoint", path="long.ckpt", depth="0")
    assert status == 200  # the pool still answers


def test_an_index_linked_out_of_the_root_is_never_read_or_quoted(server: Server) -> None:
    status, body = server.get("checkpoint", path=".")
    assert status == 403, body
    assert "SECRET" not in json.dumps(body) and str(server.outside) not in json.dumps(body)


def test_an_index_naming_a_hidden_shard_does_not_serve_it(server: Server) -> None:
    status, body = server.get("checkpoint", path="hid")
    assert status == 404, body
    status, body = server.get("tensor", path="hid/model.safetensors.index.json", name="w")
    assert status == 404, body


def test_a_same_size_rewrite_with_its_mtime_put_back_is_served_afresh(server: Server) -> None:
    path = server.root / "swap.ckpt"
    status, body = server.get("checkpoint", path="swap.ckpt", depth="0")
    assert [row[0] for row in body["entries"]["rows"]] == ["old.w"]
    before = os.stat(path)
    time.sleep(0.05)
    write_ckpt(path, [("new.w", [4], "Float32", np.full(4, 2, np.float32).tobytes())])
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    status, body = server.get("checkpoint", path="swap.ckpt", depth="0")
    assert status == 200 and [row[0] for row in body["entries"]["rows"]] == ["new.w"]
    status, body = server.get("tensor", path="swap.ckpt", name="new.w")
    assert status == 200 and body["stats"]["mean"] == 2.0, body
