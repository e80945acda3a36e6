"""Per-layer diagnostics from weights alone, on real checkpoint files, against NumPy and WeightWatcher."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ms_notebook import open_checkpoint
from ms_notebook.checkpoint import diagnostics as diag_mod
from ms_notebook.checkpoint.errors import Cancelled
from ms_notebook.checkpoint.powerlaw_fit import fit_power_law
from tests.set_support import L, save, write_rank_set

RNG = np.random.default_rng(20)
MATRICES = {
    "gauss.weight": RNG.standard_normal((800, 400)).astype(np.float32),  # tall: WᵀW
    "wide.weight": RNG.standard_normal((150, 600)).astype(np.float32),  # wide: WWᵀ
    "heavy.weight": RNG.standard_t(2.5, (800, 400)).astype(np.float32),
    "conv.weight": RNG.standard_normal((48, 24, 3, 3)).astype(np.float32),
    "thin_conv.weight": RNG.standard_normal((16, 64, 3, 3)).astype(np.float32),  # out < in per slice
    "bn.gamma": np.ones(24, np.float32),  # not a layer
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(save(tmp_path_factory.mktemp("diag") / "layers.ckpt", MATRICES))


def _evals(w: np.ndarray) -> np.ndarray:
    """Pooled squared singular values of every out × in slice, by NumPy's SVD."""
    w = w.astype(np.float64)
    slices = [w] if w.ndim == 2 else [w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3])]
    return np.sort(np.concatenate([np.linalg.svd(s, compute_uv=False) ** 2 for s in slices]))


def test_layers_are_the_matrices_and_kernels_in_tree_order(ckpt):
    df = open_checkpoint(ckpt).diagnostics()
    assert set(df.name) == set(MATRICES) - {"bn.gamma"}
    assert dict(zip(df.name, df.kind, strict=True))["conv.weight"] == "conv"
    assert tuple(df["shape"][df.name == "conv.weight"].iloc[0]) == (48, 24, 3, 3)


def test_figures_equal_numpy_svd(ckpt):
    df = open_checkpoint(ckpt).diagnostics().set_index("name")
    for name, w in MATRICES.items():
        if name == "bn.gamma":
            continue
        ev = _evals(w)
        row = df.loc[name]
        assert row.n_evals == ev.size
        np.testing.assert_allclose(
            [row.frobenius_norm, row.spectral_norm, row.lambda_max, row.stable_rank],
            [np.linalg.norm(w.astype(np.float64)), np.sqrt(ev[-1]), ev[-1], ev.sum() / ev[-1]],
            rtol=1e-9,
        )
        assert row.alpha == pytest.approx(fit_power_law(ev).alpha, rel=1e-9)


def test_gaussian_is_random_like_and_heavy_tailed_is_not(ckpt):
    df = open_checkpoint(ckpt).diagnostics().set_index("name")
    gauss, heavy = df.loc["gauss.weight"], df.loc["heavy.weight"]
    # a Gaussian matrix: alpha high (no power-law tail), stable rank a large share of full (Marchenko–Pastur
    # puts it near 800 × 400 / (√800 + √400)² ≈ 0.34 × 400 for this shape)
    assert gauss.alpha > 6 and gauss.status == "under-trained"
    assert gauss.stable_rank > 0.3 * 400
    # heavy-tailed (Student t, 2.5 degrees of freedom): alpha low, a few directions dominate
    assert heavy.alpha < 4 < gauss.alpha - 2 and heavy.stable_rank < 0.1 * 400
    assert heavy.status in ("ok", "over-trained")


def test_agrees_with_weightwatcher(ckpt, tmp_path):
    """WeightWatcher's whole pipeline (its flat-file reader, no torch) on the same values: alpha, spectral
    norm (its ``spectral_norm`` is λ_max, our ``lambda_max``) and stable rank within 0.05 relative.
    Difference, by design: for a conv kernel WeightWatcher scales its slices (``conv2d_norm``), so its
    ``spectral_norm`` there is not the raw kernel's; alpha and stable rank do not depend on scale."""
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    import weightwatcher as ww

    layers = {}
    for i, (name, w) in enumerate(MATRICES.items()):
        if w.ndim < 2:
            continue
        np.save(tmp_path / f"{i}.weight.npy", w)
        kind = "dense" if w.ndim == 2 else "conv2d"
        layers[i] = {"key": name, "name": name, "longname": name, "weightfile": f"{i}.weight.npy",
                     "biasfile": None, "type": kind, "dims": json.dumps(w.shape)}  # fmt: skip
    config = {"framework": "ww_flatfiles", "weights_dir": str(tmp_path), "format": "ww_flatfiles",
              "model_name": "t", "layers": layers}  # fmt: skip
    (tmp_path / "ww_config.json").write_text(json.dumps(config))
    theirs = ww.WeightWatcher(model=str(tmp_path)).analyze(randomize=False, mp_fit=False, plot=False)
    theirs = theirs.set_index("longname")
    ours = open_checkpoint(ckpt).diagnostics().set_index("name")
    for name in theirs.index:
        a, b = ours.loc[name], theirs.loc[name]
        assert a.alpha == pytest.approx(b.alpha, rel=0.05), name
        assert a.stable_rank == pytest.approx(b.stable_rank, rel=0.05), name
        if a.kind == "matrix":
            assert a.lambda_max == pytest.approx(b.spectral_norm, rel=0.05), name


def test_gram_is_accumulated_in_row_blocks(ckpt, monkeypatch):
    monkeypatch.setattr(diag_mod, "_ROW_BLOCK", 1000)  # many blocks of a few rows each
    ck = open_checkpoint(ckpt)
    for name in ("gauss.weight", "wide.weight", "conv.weight", "thin_conv.weight"):
        got = np.sort(diag_mod.gram_eigenvalues(ck, name))
        np.testing.assert_allclose(got, _evals(MATRICES[name]), rtol=1e-8, atol=1e-6)


def test_above_max_size_is_skipped_with_a_reason_and_can_be_raised(ckpt):
    ck = open_checkpoint(ckpt)
    small = ck.diagnostics(max_size=60).set_index("name")
    assert small.loc["gauss.weight"].status == "skipped"
    assert "max_size=60" in small.loc["gauss.weight"].note
    assert np.isnan(small.loc["gauss.weight"].alpha)
    assert small.loc["conv.weight"].status == "skipped"  # 9 positions × 24² > 60²
    raised = ck.diagnostics(max_size=400).set_index("name")
    assert raised.loc["gauss.weight"].status != "skipped" and raised.loc["gauss.weight"].alpha > 6


def test_non_finite_weights_are_marked(tmp_path):
    w = RNG.standard_normal((64, 32)).astype(np.float32)
    w[3, 4] = np.nan
    path = save(tmp_path / "nan.ckpt", {"fc.weight": w})
    row = open_checkpoint(path).diagnostics().iloc[0]
    assert row.status == "not finite" and np.isnan(row.alpha) and np.isnan(row.spectral_norm)


def test_progress_and_cancellation(ckpt):
    ck = open_checkpoint(ckpt)
    seen = []
    diag_mod.ROWS._items.clear()
    ck.diagnostics(progress=lambda f, name: seen.append((f, name)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    diag_mod.ROWS._items.clear()
    with pytest.raises(Cancelled):
        ck.diagnostics(cancelled=lambda: True)


def test_assembled_set_equals_the_whole_matrix(tmp_path):
    full = {"fc.weight": RNG.standard_normal((96, 40)).astype(np.float32)}
    folder = write_rank_set(tmp_path / "set", full, {"fc.weight": L([2], [0, -1])}, ranks=2)
    whole = save(tmp_path / "whole.ckpt", full)
    a = open_checkpoint(folder).diagnostics().iloc[0]
    b = open_checkpoint(whole).diagnostics().iloc[0]
    for col in ("frobenius_norm", "spectral_norm", "stable_rank", "alpha"):
        assert a[col] == pytest.approx(b[col], rel=1e-9)


def test_not_a_layer_is_refused_by_name(ckpt):
    with pytest.raises(ValueError, match=r"bn\.gamma"):
        open_checkpoint(ckpt).diagnostics(names=["bn.gamma"])


def test_fit_of_a_known_power_law():
    # eigenvalues drawn from a Pareto law of density exponent 3 (numpy's pareto(a) + 1 has exponent a + 1)
    x = np.random.default_rng(1).pareto(2.0, 4000) + 1.0
    fit = fit_power_law(x)
    assert fit.alpha == pytest.approx(3.0, abs=0.15)
    assert fit_power_law(np.arange(1, 10.0)) is None  # too few to fit
    assert Path(diag_mod.__file__).name == "diagnostics.py"
