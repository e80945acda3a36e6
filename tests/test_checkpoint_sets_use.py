"""Everything built on a Checkpoint works on a set unchanged (tree, DataFrame, compare, diff, TransferPlan,
browse, the CLI), and ``merge`` writes one checkpoint through MindSpore that opens and equals the set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from ms_notebook import TransferPlan, compare, diff, merge, open_checkpoint
from ms_notebook.checkpoint import CheckpointError
from ms_notebook.checkpoint.sets import CheckpointSet
from tests.transfer_support import SmallNet, save_pretrained

from .set_support import EXTRA, OMIT, L, rich_set, same_bits, save, write_rank_set

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pretrained SmallNet with Momentum state as one file, and the same values cut over 2 ranks
    (every parameter and moment by rows, as the strategy says; the scalars replicated)."""
    folder = tmp_path_factory.mktemp("pretrained")
    single = folder / "pretrained.ckpt"
    save_pretrained(str(single), "momentum")
    values = {k: v.asnumpy() for k, v in ms.load_checkpoint(str(single)).items()}
    cut = {n: v for n, v in values.items() if v.ndim >= 1 and v.shape[0] % 2 == 0 and v.size > 1}
    layouts = {n: L([2], [0] + [-1] * (v.ndim - 1)) for n, v in cut.items()}
    write_rank_set(folder / "ranks", values, layouts, ranks=2)  # in the file's order; scalars whole
    return single, folder / "ranks", values


def test_tree_dataframe_compare_and_diff_see_the_full_model(pretrained):
    single, ranks, _ = pretrained
    ck, one = open_checkpoint(ranks), open_checkpoint(single)
    assert isinstance(ck, CheckpointSet) and ck.keys() == one.keys()
    assert ck.tree().to_dict() == one.tree().to_dict()
    frame, single_frame = ck.to_dataframe(), one.to_dataframe()
    assert frame["name"].tolist() == [info.name for info in one.tree_order()]  # the tree's order
    by_name = single_frame.set_index("name").loc[frame["name"]].reset_index()
    assert frame.equals(by_name)
    assert ck.num_params == one.num_params
    report = compare(ck, SmallNet(10))
    assert report.counts["matched"] == len(list(SmallNet(10).get_parameters()))
    assert {r.status for r in diff(ck, one).rows} == {"unchanged"}


def test_a_transfer_plan_loads_assembled_values(pretrained):
    _, ranks, values = pretrained
    net = SmallNet(10)
    TransferPlan(net, open_checkpoint(ranks)).apply()
    for p in net.get_parameters():
        assert same_bits(p.asnumpy(), values[p.name]), p.name


def test_browse_shows_the_set_and_where_a_tensor_lives(pretrained):
    from ms_notebook import browse

    _, ranks, _ = pretrained
    browser = browse(open_checkpoint(ranks))
    assert "per-rank files of a distributed run" in browser.header.value
    assert "2 ranks (rank_0 … rank_1)" in browser.header.value
    browser.select("block3.dense.weight")
    assert "rank_0" in browser.details.value and "[8:16, 0:128]" in browser.details.value


def test_cli_inspects_a_folder_with_a_strategy_and_a_step(pretrained, tmp_path):
    _, ranks, _ = pretrained
    env = {**os.environ, "GLOG_v": "3"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ms_notebook", *args], cwd=ROOT, capture_output=True, text=True, env=env
        )

    proc = cli("inspect", str(ranks), "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    assert "set: per-rank files of a distributed run, 3 files" in proc.stdout
    assert "strategy strategy.ckpt" in proc.stdout
    moved = tmp_path / "s.ckpt"
    (ranks / "strategy.ckpt").rename(moved)
    try:
        proc = cli("inspect", str(ranks), "--strategy", str(moved), "--step", "1_4", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["set"]["strategy"] == [os.path.relpath(moved, ranks)]
        bad = cli("inspect", str(ranks), "--step", "9")
        assert bad.returncode == 1 and "no file match step=9" in bad.stderr
    finally:
        moved.rename(ranks / "strategy.ckpt")


# -- merge -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_merge_writes_one_file_that_equals_the_set(tmp_path, fmt):
    fulls, layouts = rich_set()
    write_rank_set(tmp_path / "set", fulls, layouts, ranks=8, fmt=fmt, extra=EXTRA, omit=OMIT)
    ck = open_checkpoint(tmp_path / "set")
    seen = []
    merged = merge(ck, tmp_path / f"merged.{fmt}", progress=lambda f, m: seen.append((f, m)))
    assert merged.format == fmt and not isinstance(merged, CheckpointSet)
    assert sorted(merged) == sorted(ck)
    for name in ck:  # the moment missing from the strategy included: merge told MindSpore its layout
        assert same_bits(merged[name], ck[name]), name
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    assert any("transform_checkpoints" in m for _, m in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"merged.{fmt}", "set"]  # no temporary left
    with pytest.raises(FileExistsError):
        merge(ck, tmp_path / f"merged.{fmt}")


def test_merge_into_mindformers_layout_and_of_uneven_and_sharded_sets(tmp_path):
    fulls, layouts = rich_set()
    write_rank_set(tmp_path / "st", fulls, layouts, ranks=8, fmt="safetensors", extra=EXTRA, omit=OMIT)
    ck = open_checkpoint(tmp_path / "st")
    unified = merge(ck, tmp_path / "unified", format="unified")
    assert isinstance(unified, CheckpointSet) and unified.kind == "unified"
    assert sorted(unified) == sorted(ck) and all(same_bits(unified[n], ck[n]) for n in ck)
    # uneven and field splits go through merge_sliced_parameter
    rng = np.random.default_rng(5)
    values = {"table": rng.standard_normal((8, 3)).astype(np.float32), "wide": np.arange(24.0).reshape(12, 2)}
    lays = {"table": L([2], [0, -1], split=[3, 5]), "wide": L([2], [0, -1], field=3)}
    write_rank_set(tmp_path / "uneven", values, lays, ranks=2, extra={"global_step": np.array([3], np.int32)})
    merged = merge(open_checkpoint(tmp_path / "uneven"), tmp_path / "uneven.ckpt")
    assert all(same_bits(merged[n], v) for n, v in values.items()) and merged["global_step"][0] == 3
    # a set of whole shards merges into one file read back by MindSpore
    again = merge(unified, tmp_path / "one.safetensors")
    loaded = ms.load_checkpoint(str(tmp_path / "one.safetensors"), format="safetensors")
    assert all(same_bits(loaded[n].asnumpy(), ck[n]) for n in ck) and sorted(again) == sorted(ck)


def test_a_failed_merge_leaves_the_destination_as_it_was(tmp_path):
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    for rank in range(2):
        save(tmp_path / "set" / f"rank_{rank}" / "net.ckpt", {"w": w})
    ck = open_checkpoint(tmp_path / "set")
    dst = tmp_path / "merged.ckpt"
    dst.write_bytes(b"the old file")
    (tmp_path / "set" / "rank_1" / "net.ckpt").unlink()  # gone after opening: the merge must fail
    with pytest.raises((CheckpointError, ValueError, OSError)):
        merge(ck, dst, overwrite=True)
    assert dst.read_bytes() == b"the old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.ckpt", "set"]  # no temporary left


def test_merge_keeps_appended_strings_which_the_mindspore_transform_cannot_read(tmp_path):
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    for rank in range(2):
        folder = tmp_path / "set" / f"rank_{rank}"
        folder.mkdir(parents=True)
        part = [{"name": "w", "data": ms.Tensor(w[2 * rank : 2 * rank + 2])}]
        ms.save_checkpoint(part, str(folder / "net.ckpt"), append_dict={"task": "digits", "epoch_num": 3})
    (tmp_path / "set" / "strategy.json").write_text(
        json.dumps({"parallel_layout_item": {"w": {"dev_matrix": [2], "tensor_map": [0, -1]}}})
    )
    ck = open_checkpoint(tmp_path / "set")
    assert ck["task"] == "digits" and same_bits(ck["w"], w)
    merged = merge(ck, tmp_path / "merged.ckpt")
    assert merged["task"] == "digits" and same_bits(merged["w"], w) and merged["epoch_num"] == 3


def test_the_browser_merge_control_merges_in_a_thread_and_shows_errors(pretrained):
    from ms_notebook import browse
    from ms_notebook.widgets.set_panel import MergeControl

    _, ranks, values = pretrained
    browser = browse(open_checkpoint(ranks))
    control = browser.merge
    assert isinstance(control, MergeControl) and control in browser.children
    assert control.destination.value == str(ranks.parent / "ranks-merged.ckpt")
    assert control.format.options == ("ckpt", "safetensors")
    control.format.value = "safetensors"
    assert control.destination.value.endswith("ranks-merged.safetensors")
    control.button.click()  # runs in a background thread
    merged = control.wait(timeout=120)
    assert merged is not None and control.progress.value == 1.0 and control.progress.bar_style == "success"
    assert all(same_bits(merged[n], values[n]) for n in values)
    control.run()  # the destination exists now: the error is shown, nothing raised
    assert control.result is None and control.progress.bar_style == "danger"
    assert "exists" in control.status.value and not control.button.disabled
    assert open_checkpoint(ranks.parent / "ranks-merged.safetensors").keys() == merged.keys()
