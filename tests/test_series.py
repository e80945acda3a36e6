"""A run's checkpoints over time: a real series written by Model.train + ModelCheckpoint (a NaN injected at a
known step), checked against MindSpore's own load_checkpoint and NumPy."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ms_notebook import CheckpointError, open_series
from ms_notebook.checkpoint import series as series_mod
from tests.series_support import train_series
from tests.set_support import L, save, write_rank_set

NAN_AT = 21  # global step of the injected NaN (epoch 1 has 22 steps of 64 images: saved at 3, 6, …, 21)
NAN_PARAM = "block3.dense.weight"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("series") / "run"
    train_series(folder, epochs=2, save_steps=3, nan_at=NAN_AT, nan_param=NAN_PARAM)
    return folder


@pytest.fixture(scope="module")
def loaded(run_folder):
    """Every file of the run as MindSpore loads it: {path: {name: ndarray}}."""
    import mindspore as ms

    return {
        str(p): {k: v.asnumpy() for k, v in ms.load_checkpoint(str(p)).items()}
        for p in sorted(run_folder.glob("*.ckpt"))
    }


def _clear_caches() -> None:
    series_mod.FIGURES.clear()
    series_mod.CHANGES.clear()
    series_mod.HISTOGRAMS.clear()


def test_files_are_ordered_by_the_step_mindspore_wrote(run_folder, loaded):
    s = open_series(run_folder)
    assert len(s) == len(loaded) == 15
    stored = [int(loaded[p]["global_step"].reshape(-1)[0]) for p in s.paths]
    assert s.steps == stored == sorted(stored)
    assert s.steps[:3] == [3, 6, 9] and s.steps[-1] == 44
    assert (
        os.path.basename(s.paths[6]) == "demo-1_21.ckpt" and os.path.basename(s.paths[7]) == "demo-2_2.ckpt"
    )


def test_first_nonfinite_is_the_checkpoint_the_nan_was_written_to(run_folder, loaded):
    _clear_caches()
    s = open_series(run_folder)
    found = s.first_nonfinite()
    first = found[found.name == NAN_PARAM].iloc[0]
    assert first.step == NAN_AT
    assert os.path.basename(first.path) == f"demo-1_{NAN_AT}.ckpt"
    assert first.nan_count == 1
    assert found.step.min() == NAN_AT  # nothing is flagged earlier
    # exactly the tensors MindSpore's loaded values say, each at its first such checkpoint
    expected = {}
    for step, path in zip(s.steps, s.paths, strict=True):
        for name, value in loaded[path].items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                expected.setdefault(name, step)
    assert dict(zip(found.name, found.step, strict=True)) == expected


def test_change_equals_numpy_on_the_loaded_values(run_folder, loaded):
    _clear_caches()
    s = open_series(run_folder)
    table = s.change()
    assert set(table.name) == set(s.names("weights"))
    for row in table.itertuples():
        i = s.paths.index(row.path)
        x = loaded[row.path][row.name].astype(np.float64)
        first = loaded[s.paths[0]][row.name].astype(np.float64)
        want_first = np.linalg.norm(x - first) / np.linalg.norm(first)
        np.testing.assert_allclose(row.change_first, want_first, rtol=1e-9, equal_nan=True)
        if i == 0:
            assert math.isnan(row.change_prev) and row.change_first == 0
        else:
            prev = loaded[s.paths[i - 1]][row.name].astype(np.float64)
            want = np.linalg.norm(x - prev) / np.linalg.norm(prev)
            np.testing.assert_allclose(row.change_prev, want, rtol=1e-9, equal_nan=True)
    nan_rows = table[(table.name == NAN_PARAM) & (table.step >= NAN_AT)]
    assert nan_rows.change_prev.isna().all()  # a NaN makes the change unknown, never a number


def test_stats_equal_numpy_on_the_loaded_values(run_folder, loaded):
    s = open_series(run_folder)
    table = s.stats(group=None)
    assert len(table) == sum(len(s.names(None)) for _ in s.paths)
    for row in table.itertuples():
        x = loaded[row.path][row.name].astype(np.float64).reshape(-1)
        finite = x[np.isfinite(x)]
        assert row.count == x.size and row.nan_count == int(np.isnan(x).sum())
        if not finite.size:  # all NaN (after the injected NaN spread): no figure is made up
            assert math.isnan(row.mean) and row.l2 == 0
            continue
        np.testing.assert_allclose(
            [row.mean, row.std, row.min, row.max, row.l2],
            [finite.mean(), finite.std(), finite.min(), finite.max(), np.linalg.norm(finite)],
            rtol=1e-9,
            atol=1e-12,
        )


def test_streamed_pass_equals_held_pass(run_folder, monkeypatch):
    _clear_caches()
    held = open_series(run_folder).change()
    _clear_caches()
    monkeypatch.setattr(series_mod, "HOLD", 0)  # every tensor streamed chunk by chunk beside its references
    streamed = open_series(run_folder).change()
    np.testing.assert_allclose(streamed.change_prev, held.change_prev, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(streamed.change_first, held.change_first, rtol=1e-12, equal_nan=True)


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


def test_a_second_look_reads_nothing(run_folder):
    _clear_caches()
    s = open_series(run_folder)
    before = _bytes_read()
    first = s.change()
    read_once = _bytes_read() - before
    again = open_series(run_folder)  # a new series over the same files: same stamps, same cache
    before = _bytes_read()
    second = again.change()
    block = again.block_change()
    assert _bytes_read() - before < 4096 < read_once
    assert first.equals(second) and len(block) == 4 * len(s)


def test_a_rewritten_file_is_read_again(run_folder, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(run_folder, folder)
    s = open_series(folder)
    before = s.change(NAN_PARAM)
    target, source = folder / "demo-1_6.ckpt", folder / "demo-1_9.ckpt"
    target.chmod(0o600)
    tmp = folder / "swap.tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)  # step 6 now holds step 9's values (a new inode)
    after = open_series(folder).change(NAN_PARAM)
    assert after.change_prev[2] == 0.0  # steps 6 and 9 are now the same values
    assert before.change_prev[2] > 0
    assert after.change_first[1] == pytest.approx(after.change_first[2], rel=1e-12)


def test_blocks_are_transfer_plans_blocks(run_folder):
    from ms_notebook.demo import DigitsNet
    from ms_notebook.transfer.blocks import network_blocks
    from tests.mindcv_shaped import ResNetLike

    s = open_series(run_folder)
    want = {b.path: set(b.names) for b in network_blocks(DigitsNet())}
    assert {k: set(v) for k, v in s.blocks().items()} == want
    table = s.block_change()
    assert list(table.block.unique()) == ["block1", "block2", "block3", "head"]
    bad = table[table.nan_count > 0]
    assert bad.step.min() == NAN_AT and set(bad[bad.step == NAN_AT].block) == {"block3"}

    import mindspore as ms

    net = ResNetLike()
    path = str(Path(s.paths[0]).parent.parent / "resnetlike.ckpt")
    ms.save_checkpoint(net, path)
    rs = open_series([path])
    assert {k: set(v) for k, v in rs.blocks().items()} == {b.path: set(b.names) for b in network_blocks(net)}


def test_block_change_is_the_change_of_the_blocks_values_together(run_folder, loaded):
    s = open_series(run_folder)
    table = s.block_change()
    names = s.blocks()["block1"]
    for i in (1, 5):
        a = np.concatenate([loaded[s.paths[i - 1]][n].reshape(-1) for n in names]).astype(np.float64)
        b = np.concatenate([loaded[s.paths[i]][n].reshape(-1) for n in names]).astype(np.float64)
        row = table[(table.block == "block1") & (table.step == s.steps[i])].iloc[0]
        assert row.change_prev == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
        assert row.tensors == len(names)


def test_histograms_over_time_share_one_range(run_folder, loaded):
    s = open_series(run_folder)
    counts, edges, steps = s.histograms("head.weight", bins=30)
    assert counts.shape == (len(s), 30) and steps == s.steps
    values = [loaded[p]["head.weight"].astype(np.float64) for p in s.paths]
    lo = min(v.min() for v in values)
    hi = max(v.max() for v in values)
    assert edges[0] == lo and edges[-1] == hi
    for row, v in zip(counts, values, strict=True):
        np.testing.assert_array_equal(row, np.histogram(v, bins=30, range=(lo, hi))[0])


def _tiny(path: Path, step: int | None = None, key: str = "step") -> Path:
    values = {"w": np.full((2, 3), float(len(path.name)), np.float32)}
    if step is not None:
        values[key] = np.array(step, np.int64)
    return save(path, values, "safetensors" if path.suffix == ".safetensors" else "ckpt")


def test_name_order_epoch_step_runs_and_tags(tmp_path):
    names = ["net-1_10.ckpt", "net_1-1_5.ckpt", "net-2_1.ckpt", "net-1_9.ckpt", "net-1_10_breakpoint.ckpt",
             "net-1_2.safetensors", "resnet_50-1_3.ckpt"]  # fmt: skip
    for n in names:
        _tiny(tmp_path / n)
    s = open_series(tmp_path)
    order = [os.path.basename(p) for p in s.paths]
    assert order == ["net-1_2.safetensors", "net-1_9.ckpt", "net-1_10.ckpt", "net-1_10_breakpoint.ckpt",
                     "net-2_1.ckpt", "resnet_50-1_3.ckpt", "net_1-1_5.ckpt"]  # fmt: skip
    # no stored step: (epoch − 1) × 10 + step, 10 being the largest in-epoch step the names show
    assert s.steps == [2, 9, 10, 10, 11, 3, 5]
    assert s.steps_known  # every name implies a step
    # a list keeps its order; a glob pattern is ordered
    listed = open_series([tmp_path / "net-2_1.ckpt", tmp_path / "net-1_9.ckpt"])
    assert [os.path.basename(p) for p in listed.paths] == ["net-2_1.ckpt", "net-1_9.ckpt"]
    globbed = open_series(str(tmp_path / "net-*.ckpt"))
    want = ["net-1_9.ckpt", "net-1_10.ckpt", "net-1_10_breakpoint.ckpt", "net-2_1.ckpt"]
    assert [os.path.basename(p) for p in globbed.paths] == want


def test_runner_names_order_by_epoch_and_stored_step(tmp_path):
    _tiny(tmp_path / "last.ckpt", 90)
    _tiny(tmp_path / "best.ckpt", 60)
    _tiny(tmp_path / "epoch_10.ckpt", 30)
    _tiny(tmp_path / "epoch_2.ckpt", 6)
    s = open_series(tmp_path)
    assert [os.path.basename(p) for p in s.paths] == [
        "epoch_2.ckpt",
        "epoch_10.ckpt",
        "best.ckpt",
        "last.ckpt",
    ]
    assert s.steps == [6, 30, 60, 90]


def test_bad_input_is_a_clear_error(tmp_path, run_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"holds no \.ckpt"):
        open_series(empty)
    broken = tmp_path / "broken"
    shutil.copytree(run_folder, broken)
    victim = broken / "demo-1_12.ckpt"
    victim.chmod(0o600)
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 2)
    with pytest.raises(CheckpointError) as err:
        open_series(broken)
    assert "demo-1_12.ckpt" in str(err.value)
    with pytest.raises(CheckpointError, match="not a folder"):
        open_series(tmp_path / "nothing-here")


def test_series_of_rank_sets_reads_assembled_tensors(tmp_path):
    rng = np.random.default_rng(3)
    fulls = [{"layer.weight": rng.standard_normal((8, 6)).astype(np.float32)} for _ in range(2)]
    layout = {"layer.weight": L([2], [0, -1])}
    for stem, full in zip(("net-1_4", "net-1_8"), fulls, strict=True):
        write_rank_set(tmp_path, full, layout, ranks=2, stem=stem)
    s = open_series(tmp_path)
    assert s.steps == [4, 8]
    a, b = (f["layer.weight"].astype(np.float64) for f in fulls)
    row = s.change("layer.weight").iloc[1]
    assert row.change_prev == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
    diag = s.diagnostics()
    assert list(diag.step) == [4, 8]
    sv = np.linalg.svd(b, compute_uv=False)
    assert diag.spectral_norm.iloc[1] == pytest.approx(sv[0], rel=1e-9)


def test_plots_fit_1024_by_700(run_folder):
    s = open_series(run_folder)
    for kind, name in (("change", None), ("histogram", NAN_PARAM), ("alpha", None)):
        fig = s.plot(kind, name)
        w, h = fig.get_size_inches() * fig.dpi
        assert w <= 1024 and h <= 700
        assert fig.axes and fig.axes[0].get_title(loc="left")
        assert fig.axes[0].images  # a heat map was drawn


def test_progress_and_cancellation(run_folder):
    from ms_notebook.checkpoint.errors import Cancelled

    _clear_caches()
    s = open_series(run_folder)
    seen = []
    s.change(progress=lambda f, name: seen.append(f))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    _clear_caches()
    with pytest.raises(Cancelled):
        s.stats(cancelled=lambda: True)


def test_streams_cut_differently_are_aligned(tmp_path, monkeypatch):
    """A single file and an assembled set of the same tensor stream in chunks cut differently; the change
    between them is still exact."""
    rng = np.random.default_rng(5)
    a = {"layer.weight": rng.standard_normal((12, 10)).astype(np.float32)}
    b = {"layer.weight": (a["layer.weight"] + rng.standard_normal((12, 10)) * 0.1).astype(np.float32)}
    single = save(tmp_path / "one" / "net-1_1.ckpt", a)
    ranks = write_rank_set(tmp_path / "set", b, {"layer.weight": L([2], [-1, 0])}, ranks=2, stem="net-1_2")
    _clear_caches()
    monkeypatch.setattr(series_mod, "HOLD", 0)
    monkeypatch.setattr(series_mod, "CHUNK", 7)  # the file: runs of 7; the set: cut along its rows
    row = open_series([single, ranks]).change("layer.weight").iloc[1]
    x, y = a["layer.weight"].astype(np.float64), b["layer.weight"].astype(np.float64)
    assert row.change_prev == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x), rel=1e-12)


def test_series_and_diagnostics_need_no_mindspore(run_folder):
    from tests.test_checkpoint_isolation import _run

    code = (
        "import sys\nimport ms_notebook as msn\n"
        f"s = msn.open_series({str(run_folder)!r})\n"
        "print(len(s.change()), len(s.first_nonfinite()), len(s[-1].diagnostics()))\n"
        "print(any(m.split('.')[0] in ('mindspore', 'ipywidgets') for m in sys.modules))"
    )
    done = _run(code, block=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:3] == [str(14 * 15), "17", "4"] and lines[3] == "False"  # 14 weights × 15 files; 4 layers


def test_a_safetensors_series_from_model_checkpoint(tmp_path):
    import mindspore as ms

    train_series(tmp_path, epochs=1, save_steps=10, fmt="safetensors")
    s = open_series(tmp_path)
    assert [os.path.basename(p) for p in s.paths] == ["demo-1_10.safetensors", "demo-1_20.safetensors",
                                                      "demo-1_22.safetensors"]  # fmt: skip
    assert s.steps == [10, 20, 22]
    loaded = [ms.load_checkpoint(p, format="safetensors") for p in s.paths]
    a, b = (v["head.weight"].asnumpy().astype(np.float64) for v in loaded[1:])
    row = s.change("head.weight").iloc[2]
    assert row.change_prev == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
