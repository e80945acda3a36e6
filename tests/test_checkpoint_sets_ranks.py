"""Per-rank checkpoint sets (rank_N/ folders + strategy file) read as one checkpoint.

Sets are cut with MindSpore's own slicing and written with ``save_checkpoint``; what we assemble must equal,
bit for bit, the original arrays and what MindSpore's merge APIs (``transform_checkpoints``,
``merge_sliced_parameter``, ``load_distributed_checkpoint``, ``unified_safetensors``) make of the same files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from ms_notebook.checkpoint import CheckpointError, open_checkpoint
from ms_notebook.checkpoint.sets import CheckpointSet, read_strategy

from .set_support import (
    EXTRA,
    OMIT,
    L,
    rank_file,
    rank_slice,
    rich_set,
    same_bits,
    save,
    write_rank_set,
    write_strategy,
)


@pytest.fixture(scope="module")
def rich_sets(tmp_path_factory):
    """The 8-rank set of every cut, once in .ckpt and once in .safetensors, with its values and layouts."""
    fulls, layouts = rich_set()
    out = {}
    for fmt in ("ckpt", "safetensors"):
        folder = tmp_path_factory.mktemp(f"rich-{fmt}")
        write_rank_set(folder, fulls, layouts, ranks=8, fmt=fmt, extra=EXTRA, omit=OMIT)
        out[fmt] = (folder, fulls, layouts, fmt)
    return out


@pytest.fixture(params=["ckpt", "safetensors"])
def rich(request, rich_sets):
    return rich_sets[request.param]


def test_full_shapes_values_and_holders_of_every_kind_of_cut(rich):
    folder, fulls, _, fmt = rich
    ck = open_checkpoint(folder)
    assert isinstance(ck, CheckpointSet) and ck.kind == "ranks" and ck.format == fmt
    assert sorted(ck) == sorted([*fulls, *EXTRA])  # (safetensors files hold names sorted)
    for name, full in {**fulls, **EXTRA}.items():
        assert ck.info(name).shape == full.shape, name
        assert same_bits(ck[name], full), name
    # rows cut 4 ways by the model-parallel dim; data-parallel ranks 4 apart hold the same rows
    embed = ck.slices("embed.weight")
    assert [s.box for s in embed] == [
        ((0, 4), (0, 6)),
        ((4, 8), (0, 6)),
        ((8, 12), (0, 6)),
        ((12, 16), (0, 6)),
    ]
    assert [s.ranks for s in embed] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert [s.box[1] for s in ck.slices("dense.weight")] == [(0, 4), (4, 8), (8, 12), (12, 16)]
    # optimizer sharding: the 2 data-parallel ranks split each column slice's rows; no replicas left
    sharded = {s.box: s.ranks for s in ck.slices("sharded.weight")}
    assert sharded[((0, 8), (0, 2))] == [0] and sharded[((8, 16), (0, 2))] == [4]
    assert [s.ranks for s in ck.slices("norm.gamma")] == [list(range(8))]
    assert ck.inferred_from("moment2.embed.weight") == "embed.weight"
    assert ck.inferred_from("moment1.embed.weight") is None  # named in the strategy
    assert any("follow their parameter's layout" in n for n in ck.notes)
    assert any("global_step" in n for n in ck.notes)


def test_statistics_preview_and_chunks_run_over_the_full_tensor(rich):
    folder, fulls, _, _ = rich
    ck = open_checkpoint(folder)
    full = fulls["block.weight"]
    chunks = np.concatenate([c.copy() for c in ck.iter_chunks("block.weight", chunk_elements=5)])
    assert same_bits(chunks, full.reshape(-1))
    np.testing.assert_array_equal(ck.preview("dense.weight", 20), fulls["dense.weight"].reshape(-1)[:20])
    stats = ck.stats("sharded.weight", chunk_elements=7)
    assert stats.count == full.size * 2 and stats.max == pytest.approx(float(fulls["sharded.weight"].max()))
    counts, edges = ck.histogram("embed.weight", bins=8)
    np.testing.assert_array_equal(counts, np.histogram(fulls["embed.weight"], bins=edges)[0])


def test_equals_mindspore_transform_checkpoints_bit_for_bit(rich, tmp_path):
    folder, fulls, layouts, fmt = rich
    ck = open_checkpoint(folder)
    # MindSpore needs the layout of every cut tensor: give it a strategy naming the omitted moment too
    strategy = write_strategy(tmp_path / "all.ckpt", {n: layouts[n] for n in fulls if n in layouts})
    ms.transform_checkpoints(str(folder), str(tmp_path / "out"), "m", str(strategy), None, output_format=fmt)
    merged = ms.load_checkpoint(str(tmp_path / "out" / "rank_0" / f"m0.{fmt}"), format=fmt)
    assert set(merged) == set(ck)
    for name, param in merged.items():
        assert same_bits(param.asnumpy(), ck[name]), name


def test_equals_merge_sliced_parameter_and_load_distributed_checkpoint(rich_sets):
    folder, fulls, _, _ = rich_sets["ckpt"]
    ck = open_checkpoint(folder)
    strategy = ms.build_searched_strategy(str(folder / "strategy.ckpt"))
    files = [rank_file(folder, r) for r in range(8)]
    per_rank = [ms.load_checkpoint(f) for f in files]
    for name in ("embed.weight", "dense.weight", "block.weight", "norm.gamma", "half.weight"):
        merged = ms.merge_sliced_parameter([d[name] for d in per_rank], strategy)
        ours = ck[name]
        reference = merged.asnumpy()  # MindSpore widens bfloat16 to float32, exactly
        assert same_bits(ours.astype(reference.dtype), reference), name

    class Net(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            for name in ("embed.weight", "dense.weight", "block.weight", "sharded.weight"):
                setattr(
                    self,
                    name.split(".")[0],
                    ms.Parameter(ms.Tensor(np.zeros(fulls[name].shape, np.float32)), name),
                )

    net = Net()
    ms.load_distributed_checkpoint(net, files, None, str(folder / "strategy.ckpt"))
    for p in net.get_parameters():
        assert same_bits(p.asnumpy(), ck[p.name]), p.name


def test_equals_mindspore_unified_safetensors(rich_sets, tmp_path):
    folder, fulls, layouts, _ = rich_sets["safetensors"]
    from mindspore.parallel import unified_safetensors

    strategy = write_strategy(tmp_path / "all.ckpt", {n: layouts[n] for n in fulls if n in layouts})
    unified_safetensors(str(folder), str(strategy), str(tmp_path / "unified"))
    ck = open_checkpoint(folder)
    merged = open_checkpoint(tmp_path / "unified")
    assert merged.kind == "unified" and set(merged) == set(ck)
    for name in ck:
        assert same_bits(merged[name], ck[name]), name


def test_strategy_as_json_reads_the_same_layouts(tmp_path):
    fulls, layouts = rich_set()
    flat = {n: v for n, v in fulls.items() if n != "nested.weight"}  # MindSpore's JSON form has flat maps
    write_rank_set(tmp_path, flat, layouts, ranks=8, strategy_form="json", omit=OMIT)
    (tmp_path / "other").mkdir()
    pb = write_strategy(tmp_path / "other" / "s.ckpt", {n: layouts[n] for n in flat if n not in OMIT})
    assert read_strategy(tmp_path / "strategy.json").layouts == read_strategy(pb).layouts
    ck = open_checkpoint(tmp_path)
    assert ck.strategy == (str(tmp_path / "strategy.json"),)
    for name, full in flat.items():
        assert same_bits(ck[name], full), name
    ms_strategy = ms.build_searched_strategy(str(tmp_path / "strategy.json"))
    merged = ms.merge_sliced_parameter(
        [ms.load_checkpoint(rank_file(tmp_path, r))["dense.weight"] for r in range(8)], ms_strategy
    )
    assert same_bits(merged.asnumpy(), ck["dense.weight"])


def test_uneven_rows_and_field_layouts_match_merge_sliced_parameter(tmp_path):
    rng = np.random.default_rng(3)
    fulls = {
        "table": rng.standard_normal((8, 3)).astype(np.float32),
        "wide": rng.standard_normal((12, 2)).astype(np.float32),
    }
    layouts = {"table": L([2], [0, -1], split=[3, 5], offsets=[0, 3]), "wide": L([2], [0, -1], field=3)}
    write_rank_set(tmp_path, fulls, layouts, ranks=2)
    ck = open_checkpoint(tmp_path)
    assert [s.box for s in ck.slices("table")] == [((0, 3), (0, 3)), ((3, 8), (0, 3))]
    assert len(ck.slices("wide")) == 6  # 3 fields x 2 ranks
    strategy = ms.build_searched_strategy(str(tmp_path / "strategy.ckpt"))
    for name, full in fulls.items():
        merged = ms.merge_sliced_parameter(
            [ms.load_checkpoint(rank_file(tmp_path, r))[name] for r in range(2)], strategy
        )
        assert same_bits(ck[name], full) and same_bits(merged.asnumpy(), full), name


def test_pipeline_stages_hold_their_own_parameters(tmp_path):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((4, 2)).astype(np.float32), rng.standard_normal((2, 6)).astype(np.float32)
    la, lb = L([2], [0, -1]), L([2], [-1, 0])
    for rank in range(4):  # ranks 0-1: stage 0 holds a; ranks 2-3: stage 1 holds b
        values = {"a": rank_slice(a, la, rank)} if rank < 2 else {"b": rank_slice(b, lb, rank)}
        save(tmp_path / f"rank_{rank}" / "net.ckpt", values)
    write_strategy(tmp_path / "strategy.ckpt", {"0-a": la, "1-b": lb})
    ck = open_checkpoint(tmp_path)
    assert same_bits(ck["a"], a) and same_bits(ck["b"], b)
    assert [s.ranks for s in ck.slices("b")] == [[2], [3]]
    ms.transform_checkpoints(str(tmp_path), str(tmp_path / "out"), "m", str(tmp_path / "strategy.ckpt"), None)
    merged = ms.load_checkpoint(str(tmp_path / "out" / "rank_0" / "m0.ckpt"))
    assert same_bits(merged["a"].asnumpy(), ck["a"]) and same_bits(merged["b"].asnumpy(), ck["b"])


# -- which file a rank folder contributes ------------------------------------------------------------------


def _steps_set(folder: Path, names: list[str], fmt: str = "ckpt") -> dict[str, float]:
    """Two data-parallel ranks, each with one file per name holding ``w`` = a value per name."""
    values = {}
    for i, name in enumerate(names):
        values[name] = float(i)
        for rank in range(2):
            save(folder / f"rank_{rank}" / name, {"w": np.full((2,), i, np.float32)}, fmt)
    return values


def test_several_ckpt_files_per_rank_use_mindspores_lexicographic_choice_and_say_so(tmp_path):
    names = ["net-9_10.ckpt", "net-10_10.ckpt", "net-2_10.ckpt"]
    values = _steps_set(tmp_path, names)
    ck = open_checkpoint(tmp_path)
    assert ck.rank_files[0].file.endswith("net-9_10.ckpt")  # sorted()[-1], as transform_checkpoints picks
    assert ck["w"][0] == values["net-9_10.ckpt"]
    text = " ".join(ck.notes)
    assert "net-9_10.ckpt" in text and "lexicographically last" in text
    assert "net-10_10.ckpt looks newer" in text
    by_step = open_checkpoint(tmp_path, step="10_10")
    assert by_step["w"][0] == values["net-10_10.ckpt"]
    by_file = open_checkpoint(tmp_path, file="net-2_10.ckpt")
    assert by_file["w"][0] == values["net-2_10.ckpt"] and "file='net-2_10.ckpt'" in " ".join(by_file.notes)
    with pytest.raises(CheckpointError, match="no file match step=7"):
        open_checkpoint(tmp_path, step=7)


def test_several_safetensors_files_per_rank_use_the_highest_numbers(tmp_path):
    names = ["net-9_10.safetensors", "net-10_10.safetensors", "net-10_2.safetensors"]
    values = _steps_set(tmp_path, names, fmt="safetensors")
    ck = open_checkpoint(tmp_path)
    assert ck.rank_files[1].file.endswith("net-10_10.safetensors")
    assert ck["w"][0] == values["net-10_10.safetensors"]
    assert "last two numbers" in " ".join(ck.notes)


def test_data_parallel_ranks_are_one_checkpoint_shown_once_with_a_byte_check(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    for rank in range(3):
        save(tmp_path / f"rank_{rank}" / "net.ckpt", {"w": w, "b": np.ones(3, np.float32)})
    ck = open_checkpoint(tmp_path)
    assert ck.strategy == () and ck.replica_ranks == [1, 2]
    assert [s.ranks for s in ck.slices("w")] == [[0, 1, 2]]
    assert "data parallel" in " ".join(ck.notes) and ck.replicas is None
    check = ck.check_replicas()
    assert check.identical and check.compared == 2 and check.bytes_read == 2 * 2 * (24 + 12)
    # a replica that drifted is named
    save(tmp_path / "rank_2" / "net.ckpt", {"w": w + 1, "b": np.ones(3, np.float32)})
    drifted = open_checkpoint(tmp_path).check_replicas()
    assert not drifted.identical and drifted.differing == {"w": [2]}
    assert "differ" in drifted.describe()


# -- malformed sets ----------------------------------------------------------------------------------------


def _small(folder: Path) -> tuple[np.ndarray, L]:
    w = np.arange(48, dtype=np.float32).reshape(8, 6)
    lay = L([4], [0, -1])
    write_rank_set(folder, {"w": w}, {"w": lay}, ranks=4)
    return w, lay


def test_a_missing_rank_names_the_slice_and_the_rank(tmp_path):
    _small(tmp_path)
    shutil.rmtree(tmp_path / "rank_2")
    with pytest.raises(CheckpointError, match=r"no rank holds the slice \[4:6, 0:6\] of 'w'.*rank_2") as err:
        open_checkpoint(tmp_path)
    assert err.value.path == str(tmp_path)


def test_a_strategy_naming_a_tensor_no_rank_has(tmp_path):
    _, lay = _small(tmp_path)
    write_strategy(tmp_path / "strategy.ckpt", {"w": lay, "ghost.weight": lay})
    with pytest.raises(CheckpointError, match=r"names 'ghost\.weight', which no rank file holds") as err:
        open_checkpoint(tmp_path)
    assert err.value.path.endswith("strategy.ckpt")


def test_slices_that_do_not_tile_the_full_shape(tmp_path):
    w, _ = _small(tmp_path)
    save(tmp_path / "rank_1" / "net-1_4.ckpt", {"w": w[2:5]})  # 3 rows where the strategy says 2
    with pytest.raises(CheckpointError, match=r"stored as \[3, 6\].*rank_1.*do not tile") as err:
        open_checkpoint(tmp_path)
    assert err.value.path.endswith("rank_1/net-1_4.ckpt")


def test_ranks_with_different_shapes_and_no_strategy_ask_for_it(tmp_path):
    w = np.arange(16, dtype=np.float32).reshape(8, 2)
    lay = L([2], [0, -1], split=[3, 5])
    write_rank_set(tmp_path, {"w": w}, {"w": lay}, ranks=2)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-strategy.ckpt"
    (tmp_path / "strategy.ckpt").rename(elsewhere)
    with pytest.raises(
        CheckpointError, match=r"shape \[5, 2\] in rank_1 but \[3, 2\].*pass the strategy file"
    ):
        open_checkpoint(tmp_path)
    ck = open_checkpoint(tmp_path, strategy=elsewhere)
    assert same_bits(ck["w"], w) and ck.strategy == (str(elsewhere),)


def test_a_file_that_is_not_a_strategy_and_two_file_formats(tmp_path):
    _small(tmp_path)
    (tmp_path / "strategy.ckpt").write_bytes(b"\x0a\x03abc" * 3)
    with pytest.raises(CheckpointError, match="not a MindSpore parallel strategy file"):
        open_checkpoint(tmp_path)
    (tmp_path / "strategy.ckpt").unlink()
    save(tmp_path / "rank_0" / "other.safetensors", {"w": np.zeros(2, np.float32)}, "safetensors")
    with pytest.raises(CheckpointError, match=r"both \.ckpt and \.safetensors"):
        open_checkpoint(tmp_path, strategy=None)


def test_ranks_saved_without_redundancy_each_contribute_what_they_hold(tmp_path):
    a, b = np.arange(4, dtype=np.float32), np.ones((2, 2), np.float32)
    save(tmp_path / "rank_0" / "net.ckpt", {"a": a})  # save_checkpoint(..., remove_redundancy=True) style
    save(tmp_path / "rank_1" / "net.ckpt", {"b": b})
    ck = open_checkpoint(tmp_path)
    assert ck.keys() == ["a", "b"] and same_bits(ck["a"], a) and same_bits(ck["b"], b)
    assert [s.ranks for s in ck.slices("a")] == [[0]] and [s.ranks for s in ck.slices("b")] == [[1]]
    assert ck.replica_ranks == []
