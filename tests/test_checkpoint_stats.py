"""Statistics, histograms, the name tree and the table agree with NumPy and with the file's contents."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from ms_notebook.checkpoint import open_checkpoint  # noqa: E402

RNG = np.random.default_rng(42)
VALUES = {
    "encoder.layer0.attn.weight": (RNG.standard_normal((64, 48)) * 3 + 1e4).astype(np.float32),
    "encoder.layer0.attn.bias": np.zeros(48, np.float32),
    "encoder.layer1.ffn.weight": RNG.standard_normal((48, 96)).astype(np.float64),
    "encoder.layer1.ffn.mask": RNG.integers(0, 2, (96,)).astype(np.bool_),
    "embed.table": RNG.integers(-100, 100, (50, 8)).astype(np.int32),
    "embed.half": RNG.standard_normal((33, 7)).astype(np.float16),
    "special": np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.0, np.nan], np.float32),
    "bf": RNG.standard_normal((5, 9)).astype(ml_dtypes.bfloat16),
}


def _bf16(values: np.ndarray) -> ms.Tensor:
    return ms.Tensor(values.astype(np.float32)).astype(ms.bfloat16)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    path = tmp_path_factory.mktemp("stats") / "values.ckpt"
    params = [
        {"name": k, "data": _bf16(v) if k == "bf" else ms.Tensor(v)}
        for k, v in VALUES.items()
    ]
    ms.save_checkpoint(params, str(path))
    return open_checkpoint(path)


def _expected(values: np.ndarray) -> dict:
    x = values.astype(np.float64).ravel()
    finite = x[np.isfinite(x)]
    return {
        "count": x.size,
        "mean": finite.mean(),
        "std": finite.std(),
        "min": finite.min(),
        "max": finite.max(),
        "mean_abs": np.abs(finite).mean(),
        "zero_fraction": np.count_nonzero(values == 0) / x.size,
        "nan_count": int(np.isnan(x).sum()),
        "inf_count": int(np.isinf(x).sum()),
    }


@pytest.mark.parametrize("name", list(VALUES))
@pytest.mark.parametrize("chunk_elements", [1 << 21, 7])
def test_stats_equal_numpy_on_the_loaded_array(ck, name, chunk_elements):
    loaded = ck[name]
    got = ck.stats(name, chunk_elements=chunk_elements).to_dict()
    for key, value in _expected(loaded).items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_chunked_std_stays_accurate_for_large_offsets(ck):
    """Values near 1e4 with spread 3: a naive float32 or sum-of-squares variance loses most digits here."""
    name = "encoder.layer0.attn.weight"
    exact = np.float64(VALUES[name]).std()
    assert ck.stats(name, chunk_elements=100).std == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("name", ["encoder.layer1.ffn.weight", "special", "embed.table", "bf"])
def test_histogram_equals_numpy_without_nan_and_inf(ck, name):
    loaded = ck[name].astype(np.float64).ravel()
    finite = loaded[np.isfinite(loaded)]
    counts, edges = ck.histogram(name, bins=13, chunk_elements=11)
    ref_counts, ref_edges = np.histogram(finite, bins=13)
    assert np.array_equal(counts, ref_counts)
    assert np.allclose(edges, ref_edges)
    assert counts.sum() == finite.size


def test_histogram_with_explicit_range_counts_only_that_range(ck):
    loaded = ck["encoder.layer1.ffn.weight"].ravel()
    counts, _ = ck.histogram("encoder.layer1.ffn.weight", bins=4, range=(-1.0, 1.0))
    assert np.array_equal(counts, np.histogram(loaded, bins=4, range=(-1.0, 1.0))[0])


def test_tensor_larger_than_a_chunk_needs_no_full_copy(tmp_path):
    """A 4 M-element tensor summarised in 64 K-element chunks gives the same figures as NumPy on the whole."""
    data = np.random.default_rng(3).standard_normal(1 << 22).astype(np.float32)
    path = tmp_path / "big.ckpt"
    ms.save_checkpoint([{"name": "big", "data": ms.Tensor(data)}], str(path))
    got = open_checkpoint(path).stats("big", chunk_elements=1 << 16)
    assert got.mean == pytest.approx(np.float64(data).mean(), rel=1e-9)
    assert got.std == pytest.approx(np.float64(data).std(), rel=1e-9)
    assert (got.min, got.max) == (data.min(), data.max())


def test_string_values_have_no_statistics(tmp_path):
    path = tmp_path / "s.ckpt"
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.ones(2, np.float32))}], str(path),
                       append_dict={"note": "x"})  # fmt: skip
    with pytest.raises(TypeError, match="numeric"):
        open_checkpoint(path).stats("note")


def test_tree_nests_on_dots_with_totals_in_natural_order(ck):
    root = ck.tree()
    assert [c.name for c in root] == ["bf", "embed", "encoder", "special"]
    assert [c.name for c in root["encoder"]] == ["layer0", "layer1"]
    layer0 = root["encoder.layer0"]
    assert layer0.tensors == 2
    assert layer0.parameters == 64 * 48 + 48
    assert layer0.bytes == (64 * 48 + 48) * 4
    assert root.tensors == len(ck) and root.bytes == sum(i.nbytes for i in ck.entries)
    leaf = root["encoder.layer1.ffn.mask"]
    assert leaf.info is not None and leaf.info.shape == (96,) and leaf.info.dtype == "Bool"


def test_tree_to_dict_is_json_serialisable_and_depth_limited(ck):
    full = json.loads(json.dumps(ck.tree().to_dict()))
    assert full["tensors"] == len(VALUES)
    encoder = full["children"][2]
    assert encoder["path"] == "encoder" and encoder["children"][0]["path"] == "encoder.layer0"
    shallow = ck.tree().to_dict(depth=1)
    assert shallow["children"][2]["children"] == [] and shallow["children"][2]["truncated"]


def test_dataframe_lists_every_entry(ck):
    df = ck.to_dataframe()
    assert list(df.columns) == ["name", "group", "dtype", "shape", "numel", "nbytes"]
    assert list(df["name"]) == list(VALUES)
    assert df.set_index("name").loc["embed.table", "numel"] == 400
    assert df["nbytes"].sum() == sum(v.nbytes for v in VALUES.values())


def test_repr_is_one_line_with_totals(ck):
    text = repr(ck)
    assert "\n" not in text and "tensors=8" in text and "format=ckpt" in text
    summary = ck.summary(depth=1)
    assert "encoder/  4 tensors" in summary


def test_iter_chunks_yields_the_tensor_in_bounded_pieces(ck):
    name = "encoder.layer1.ffn.weight"
    pieces = [chunk.copy() for chunk in ck.iter_chunks(name, chunk_elements=1000)]
    assert max(p.size for p in pieces) == 1000
    assert np.array_equal(np.concatenate(pieces).reshape(ck.info(name).shape), VALUES[name])


def test_tree_order_lists_entries_as_the_tree_shows_them(tmp_path):
    """Entries in the tree's depth-first natural order (what the Viewer's pages list), names that are also
    prefixes included, without walking leaf nodes one by one."""
    names = ["m.10.w", "m.2.w", "m.1.w", "z", "a.b", "a.b.c", "a.10", "a.2", "a.b.d.e"]
    path = tmp_path / "order.ckpt"
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(np.ones(1, np.float32))} for n in names], str(path))
    ck = open_checkpoint(path)
    walked = [node.info.name for node in open_checkpoint(path).tree().walk() if node.info is not None]
    expected = ["a.2", "a.10", "a.b", "a.b.c", "a.b.d.e", "m.1.w", "m.2.w", "m.10.w", "z"]
    assert [i.name for i in ck.tree_order()] == walked == expected
    assert list(ck) == names  # the mapping keeps file order


@pytest.mark.parametrize("seed", range(6))
def test_the_fine_grid_counts_exactly_for_any_scale_offset_and_bins(seed):
    """Values near 0 beside a far edge, offsets, float32 and float64, chunked: counts exact for the edges."""
    from ms_notebook.checkpoint.stats import sketch

    rng = np.random.default_rng(seed)
    dtype = np.float32 if seed % 2 == 0 else np.float64
    scale, offset = 10.0 ** rng.uniform(-30, 30), 10.0 ** rng.uniform(-30, 30) * rng.choice([-1, 0, 1])
    x = (rng.standard_normal(300_000) * scale + offset).astype(dtype)
    x[::97] = (rng.standard_normal(x[::97].size) * scale * 1e-9).astype(dtype)  # tiny values of both signs
    x[5] = 0
    ref = x.astype(np.float64)
    chunks = [x[i : i + 70_000] for i in range(0, x.size, 70_000)]
    (stats, counts, edges, exact), sk = sketch(chunks, dtype, 40)
    assert not exact and (stats.min, stats.max) == (ref.min(), ref.max())
    for bins in (40, 1, 13, 256):
        _, counts, edges, _ = sk.summary(bins)
        assert edges[0] <= ref.min() and edges[-1] >= ref.max()
        assert np.array_equal(counts, np.histogram(ref, bins=edges)[0]), bins
