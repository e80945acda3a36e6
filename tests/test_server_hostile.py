"""A real Jupyter server (MindSpore blocked, as in test_server.py) against hostile requests and files: a
catastrophic-backtracking filter, FIFOs where files should be, links out of the root, hidden files named by an
index. The server must keep answering other requests, and answer these with a 4xx naming the problem."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from tests.ckpt_wire import write_ckpt
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
