"""The server extension on checkpoint sets (index files, folders of shards, rank folders), with MindSpore
blocked in the server as in test_server.py; every file a set reads must lie inside the server root."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from tests.test_server import Server, serve

from .set_support import EXTRA, L, write_rank_set
from .test_checkpoint_sets_shards import _values, write_shards


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server-sets")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    write_shards(root / "llm", _values())
    w = np.arange(48, dtype=np.float32).reshape(8, 6)
    write_rank_set(root / "run", {"w": w}, {"w": L([2, 2], [1, -1])}, ranks=4, extra=EXTRA)
    (root / "plain").mkdir()
    (root / "plain" / "notes.txt").write_text("no checkpoint here")
    # a set whose shard is a link out of the root
    write_shards(outside / "src", _values())
    (root / "leaky").mkdir()
    for shard in (outside / "src").iterdir():
        (root / "leaky" / shard.name).symlink_to(shard)
    yield from serve(base, root, outside)


def test_an_index_file_and_its_folder_summarise_the_whole_set(server: Server) -> None:
    values = _values()
    for path in ("llm/model.safetensors.index.json", "llm"):
        status, body = server.get("checkpoint", path=path)
        assert status == 200, body
        assert body["num_tensors"] == len(values) and body["format"] == "safetensors"
        assert body["set"]["kind"] == "shards" and body["set"]["files"] == 4
        assert sorted(r[0] for r in body["entries"]["rows"]) == sorted(values)
    status, body = server.get("tensor", path="llm", name="lm_head.weight", bins="5")
    assert status == 200, body
    value = values["lm_head.weight"]
    assert body["shape"] == list(value.shape) and body["stats"]["count"] == value.size
    assert body["slices"] == [
        {
            "box": [[0, 32], [0, 8]],
            "ranks": [],
            "file": "model-00002-of-00003.safetensors",
            "text": "[0:32, 0:8] · model-00002-of-00003.safetensors",
        }
    ]


def test_a_rank_folder_shows_full_shapes_and_which_rank_holds_what(server: Server) -> None:
    status, body = server.get("checkpoint", path="run")
    assert status == 200, body
    rows = {r[0]: r for r in body["entries"]["rows"]}
    assert rows["w"][1] == [8, 6]
    assert body["set"]["kind"] == "ranks" and body["set"]["strategy"] == ["strategy.ckpt"]
    assert body["set"]["ranks"] == {str(r): f"rank_{r}/net-1_4.ckpt" for r in range(4)}
    assert any("4 ranks" in note for note in body["set"]["notes"])
    status, detail = server.get("tensor", path="run", name="w")
    assert status == 200, detail
    w = np.arange(48, dtype=np.float64)
    assert detail["stats"]["mean"] == pytest.approx(w.mean()) and detail["preview"] == w[:16].tolist()
    assert [s["ranks"] for s in detail["slices"]] == [[0, 1], [2, 3]]
    assert [s["box"] for s in detail["slices"]] == [[[0, 4], [0, 6]], [[4, 8], [0, 6]]]


def test_a_folder_that_is_not_a_set_is_422_and_links_out_of_the_root_are_403(server: Server) -> None:
    status, body = server.get("checkpoint", path="plain")
    assert status == 422 and "not a checkpoint set" in body["message"], body
    status, body = server.get("checkpoint", path="leaky")
    assert status == 403, body
    assert "lm_head" not in json.dumps(body)
    assert server.get("tensor", path="leaky", name="lm_head.weight")[0] == 403
    assert server.get("checkpoint", path="../outside/src")[0] in (403, 404)


def test_a_rewritten_rank_file_is_read_afresh(server: Server) -> None:
    from .set_support import save

    assert server.get("tensor", path="run", name="global_step")[1]["stats"]["max"] == 12
    for rank in range(4):
        path = server.root / "run" / f"rank_{rank}" / "net-1_4.ckpt"
        w = np.arange(48, dtype=np.float32).reshape(8, 6)
        rows = slice((rank // 2) * 4, (rank // 2) * 4 + 4)
        save(path, {"w": w[rows], "global_step": np.array([13], np.int32)})
    status, body = server.get("tensor", path="run", name="global_step")
    assert status == 200 and body["stats"]["max"] == 13, body
