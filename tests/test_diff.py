"""diff(a, b) on checkpoints before and after real fine-tuning steps, checked against NumPy."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest

from ms_notebook.checkpoint import diff as diff_module
from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.checkpoint.diff import diff
from tests.test_compare import SmallCNN, train_steps


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(b64 - a64) / np.linalg.norm(a64))


def test_fine_tuning_only_the_head_moves_only_the_head(tmp_path):
    net = SmallCNN()
    before = tmp_path / "before.ckpt"
    after = tmp_path / "after.ckpt"
    ms.save_checkpoint(net, str(before))
    train_steps(net, steps=4, params=net.head.trainable_params())
    ms.save_checkpoint(net, str(after))

    report = diff(before, after)
    want_a, want_b = ms.load_checkpoint(str(before)), ms.load_checkpoint(str(after))
    for name in ("head.weight", "head.bias"):
        assert report.change(name) > 0
        assert report.change(name) == pytest.approx(
            _rel(want_a[name].asnumpy(), want_b[name].asnumpy()), rel=1e-12
        )
    for name in ("block1.0.weight", "block2.0.weight", "block3.weight", "block3.bias"):
        assert report.change(name) == 0.0
    assert set(report.names("changed")) >= {"head.weight", "head.bias"}
    df = report.to_dataframe()
    assert df.rel_change.is_monotonic_decreasing
    assert set(df.name[:2]) <= {"head.weight", "head.bias", *report.names("changed")}


def test_added_removed_and_shape_changed_tensors(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    ms.save_checkpoint(SmallCNN(10, adapter=True), str(a))
    ms.save_checkpoint(SmallCNN(5), str(b), append_dict={"epoch_num": 1})
    report = diff(open_checkpoint(a), open_checkpoint(b))
    assert sorted(report.removed) == ["adapter.bias", "adapter.weight"]
    assert report.added == ["epoch_num"]
    assert sorted(report.shape_changed) == ["head.bias", "head.weight"]
    row = next(r for r in report.rows if r.name == "head.weight")
    assert row.shape_a == (10, 32) and row.shape_b == (5, 32) and math.isnan(row.rel_change)
    assert report.to_dataframe().rel_change.isna().sum() == 5


def test_chunked_change_of_a_large_tensor_matches_numpy(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 97)).astype(np.float32)
    y = x.copy()
    y[17, :] += 0.5
    y[250, 3] = -40.0
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    ms.save_checkpoint(
        [{"name": "w", "data": ms.Tensor(x)}, {"name": "z", "data": ms.Tensor(np.zeros(4, np.float32))}],
        str(a),
    )
    ms.save_checkpoint(
        [{"name": "w", "data": ms.Tensor(y)}, {"name": "z", "data": ms.Tensor(np.ones(4, np.float32))}],
        str(b),
    )
    monkeypatch.setattr(diff_module, "CHUNK_ELEMENTS", 1000)  # 30 chunks, last one partial
    report = diff(a, b)
    row = next(r for r in report.rows if r.name == "w")
    assert row.rel_change == pytest.approx(_rel(x, y), rel=1e-12)
    assert row.max_abs_change == pytest.approx(float(np.max(np.abs(y.astype(np.float64) - x))), rel=1e-12)
    assert row.l2_a == pytest.approx(float(np.linalg.norm(x.astype(np.float64))), rel=1e-12)
    assert report.change("z") == math.inf  # from all zeros to something
    assert report.to_dataframe().name[0] == "z"


def test_html_view_lists_tensors_by_change_largest_first(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    base = np.ones((8, 8), np.float32)
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(base)} for n in ("small", "big", "same")], str(a))
    moved = {"small": base * 1.01, "big": base * 2.0, "same": base}
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in moved.items()], str(b))
    html = diff(a, b)._repr_html_()
    assert html.index("<td>big</td>") < html.index("<td>small</td>") < html.index("<td>same</td>")
