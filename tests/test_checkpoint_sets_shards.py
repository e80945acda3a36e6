"""Hugging Face style sharded safetensors (index file or folder of shards), written with the ``safetensors``
library, read as one checkpoint; malformed sets name the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ms_notebook.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from ms_notebook.checkpoint.sets import CheckpointSet

from .set_support import same_bits


def _values() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {"model.embed_tokens.weight": rng.standard_normal((32, 8)).astype(np.float16)}
    for i in range(3):
        out[f"model.layers.{i}.attn.q_proj.weight"] = rng.standard_normal((8, 8)).astype(np.float32)
        out[f"model.layers.{i}.mlp.up_proj.weight"] = rng.standard_normal((16, 8)).astype(np.float32)
        out[f"model.layers.{i}.norm.weight"] = np.ones(8, np.float32) * i
    out["lm_head.weight"] = rng.standard_normal((32, 8)).astype(np.float32)
    out["model.step"] = np.array([7], np.int64)
    return out


def write_shards(folder: Path, values: dict[str, np.ndarray], shards: int = 3, index: bool = True) -> Path:
    """``model-0000i-of-0000N.safetensors`` (names dealt round-robin) and ``model.safetensors.index.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(values)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: values[n] for n in names[i::shards]}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    path = folder / "model.safetensors.index.json"
    if index:
        total = sum(v.nbytes for v in values.values())
        path.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return path


@pytest.fixture
def sharded(tmp_path):
    values = _values()
    return write_shards(tmp_path / "llm", values), values


def test_an_index_file_opens_every_shard_as_one_checkpoint(sharded):
    index, values = sharded
    ck = open_checkpoint(index)
    assert isinstance(ck, CheckpointSet) and ck.kind == "shards" and ck.format == "safetensors"
    assert sorted(ck) == sorted(values) and len(ck.files) == 4  # the index and 3 shards
    for name, value in values.items():
        assert ck.info(name).shape == value.shape
        assert same_bits(ck[name], value), name
    assert ck.metadata["total_size"] == str(sum(v.nbytes for v in values.values()))
    (where,) = ck.slices("model.embed_tokens.weight")
    assert where.holders[0].file.endswith("model-00001-of-00003.safetensors") and where.ranks == []
    assert "3 shards listed in model.safetensors.index.json" in ck.notes
    assert ck.num_params == sum(v.size for v in values.values())  # every entry is a weight here
    tree = ck.tree()
    assert tree["model.layers"].tensors == 9


def test_the_folder_opens_through_its_index_and_without_one(sharded):
    index, values = sharded
    by_folder = open_checkpoint(index.parent)
    assert by_folder.path == str(index.parent) and sorted(by_folder) == sorted(values)
    index.unlink()
    bare = open_checkpoint(index.parent)
    assert bare.kind == "shards" and "3 shards, no index file" in bare.notes
    assert all(same_bits(bare[n], v) for n, v in values.items())


def test_a_set_diffs_and_summarises_like_one_file(sharded, tmp_path):
    from ms_notebook import diff

    index, values = sharded
    single = tmp_path / "one.safetensors"
    save_file(values, str(single))
    ck, one = open_checkpoint(index), open_checkpoint(single)
    assert isinstance(one, Checkpoint) and not isinstance(one, CheckpointSet)
    report = diff(ck, one)
    assert {r.status for r in report.rows} == {"unchanged"}
    assert len(report.rows) == len(values)
    frame = ck.to_dataframe().set_index("name").sort_index()
    expected = one.to_dataframe().set_index("name").sort_index()
    assert frame.equals(expected)
    assert "set: safetensors shards, 4 files" in ck.summary()


# -- malformed ---------------------------------------------------------------------------------------------


def test_a_missing_shard_names_the_index_and_the_shard(sharded):
    index, _ = sharded
    (index.parent / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=r"shard model-00002-of-00003\.safetensors .* is missing"
    ) as err:
        open_checkpoint(index)
    assert err.value.path == str(index)
    index.unlink()
    with pytest.raises(CheckpointError, match=r"shard model-00002-of-00003\.safetensors is missing"):
        open_checkpoint(index.parent)


def test_a_tensor_listed_twice_in_the_index(sharded):
    index, _ = sharded
    line = '"model.embed_tokens.weight": "model-00001-of-00003.safetensors",'
    twice = line + "\n" + line.replace("00001-of", "00002-of")
    text = index.read_text().replace(line, twice)
    index.write_text(text)
    with pytest.raises(CheckpointError, match=r"lists 'model\.embed_tokens\.weight' twice") as err:
        open_checkpoint(index)
    assert err.value.path == str(index)


def test_a_tensor_stored_in_two_shards(sharded):
    index, values = sharded
    index.unlink()
    save_file(
        {"lm_head.weight": values["lm_head.weight"]}, str(index.parent / "model-00003-of-00003.safetensors")
    )
    with pytest.raises(CheckpointError, match=r"'lm_head\.weight' is stored twice"):
        open_checkpoint(index.parent)


def test_an_index_that_disagrees_with_its_shards(sharded):
    index, _ = sharded
    data = json.loads(index.read_text())
    data["weight_map"]["model.embed_tokens.weight"] = "model-00002-of-00003.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError, match=r"'model\.embed_tokens\.weight' is stored here but the index puts it in"
    ):
        open_checkpoint(index)
    data["weight_map"]["model.embed_tokens.weight"] = "model-00001-of-00003.safetensors"
    data["weight_map"]["ghost"] = "model-00003-of-00003.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="puts 'ghost' in this shard, but the shard does not hold it"):
        open_checkpoint(index)


def test_an_index_may_not_name_files_outside_its_folder(sharded, tmp_path):
    index, _ = sharded
    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "outside.safetensors"))
    data = json.loads(index.read_text())
    data["weight_map"]["x"] = "../outside.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="outside the index's folder"):
        open_checkpoint(index)


def test_json_that_is_not_an_index_and_folders_that_are_not_sets(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 8}')
    with pytest.raises(CheckpointError, match='no "weight_map" object'):
        open_checkpoint(bad)
    strategy = tmp_path / "strategy.json"
    strategy.write_text('{"parallel_layout_item": {}}')
    with pytest.raises(CheckpointError, match="a parallel strategy file: open the folder of rank_N/ files"):
        open_checkpoint(strategy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint set"):
        open_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        open_checkpoint(tmp_path / "absent.safetensors.index.json")


def test_a_tensor_the_index_does_not_list_is_kept_with_a_note(sharded):
    index, values = sharded
    data = json.loads(index.read_text())
    del data["weight_map"]["lm_head.weight"]
    index.write_text(json.dumps(data))
    ck = open_checkpoint(index)
    assert sorted(ck) == sorted(values) and same_bits(ck["lm_head.weight"], values["lm_head.weight"])
    assert "1 tensors are in the shards but not in the index: 'lm_head.weight'" in ck.notes


def test_a_tensor_in_its_listed_shard_and_in_another(sharded):
    index, values = sharded
    data = json.loads(index.read_text())
    first = data["weight_map"]["model.embed_tokens.weight"]
    other = next(s for n, s in data["weight_map"].items() if s != first)
    part = {n: values[n] for n, s in data["weight_map"].items() if s == other}
    save_file(
        {**part, "model.embed_tokens.weight": values["model.embed_tokens.weight"]}, str(index.parent / other)
    )
    with pytest.raises(CheckpointError, match=r"'model\.embed_tokens\.weight' is stored twice: in " + first):
        open_checkpoint(index)


def test_a_shard_changed_after_opening_is_refused_by_name(sharded):
    index, _ = sharded
    ck = open_checkpoint(index)
    shard = Path(ck.slices("lm_head.weight")[0].holders[0].file)
    assert {f: ck._stamps[f] for f in ck.files[1:]} == {
        f: (s.st_size, s.st_mtime_ns, s.st_ino, s.st_ctime_ns) for f in ck.files[1:] for s in [Path(f).stat()]
    }
    with open(shard, "ab") as f:
        f.write(b"\0" * 8)
    assert ck.is_stale()
    with pytest.raises(CheckpointError, match="changed after it was opened") as err:
        ck["lm_head.weight"]
    assert err.value.path == str(shard)


def test_a_sets_entries_and_dataframe_follow_the_tree_not_the_shards(tmp_path):
    """Twelve layers dealt round-robin over five shards list as layers.0, 1, 2 … 11, as the tree does."""
    rng = np.random.default_rng(3)
    values = {f"layers.{i}.weight": rng.standard_normal((2, 2)).astype(np.float32) for i in range(12)}
    values["head.bias"] = np.zeros(2, np.float32)
    ck = open_checkpoint(write_shards(tmp_path / "twelve", values, shards=5))
    in_tree = [info.name for info in ck.tree().infos()]
    assert [info.name for info in ck.entries] == in_tree
    assert ck.to_dataframe()["name"].tolist() == in_tree
    assert in_tree == ["head.bias", *(f"layers.{i}.weight" for i in range(12))]
