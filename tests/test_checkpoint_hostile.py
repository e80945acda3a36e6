"""Files that change under the reader, names and shapes at the edge of what is legal, values NumPy struggles
with: a clear answer or a CheckpointError, never a signal, a warning, a hang or a quadratic blow-up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from ms_notebook.checkpoint import CheckpointError, open_checkpoint
from ms_notebook.widgets.tree_model import TreeModel
from tests.ckpt_wire import entry, write_ckpt, write_safetensors

ROOT = Path(__file__).resolve().parent.parent
DEEP = ".".join(["a"] * 20_000)  # a 40 KB dotted name, 20,000 levels


# --- files that change while or after they are read -------------------------------------------------------

CHILD = """
import sys
from ms_notebook.checkpoint import CheckpointError, open_checkpoint
from ms_notebook.checkpoint.formats import ckpt
path, what = sys.argv[1], sys.argv[2]
print("ready", flush=True)
try:
    while True:
        if what == "index":
            ckpt.read_index(path)  # the walk over the entries is nearly all of the loop
        else:
            open_checkpoint(path).stats("big", chunk_elements=1 << 14)  # many small reads
except CheckpointError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
"""


def _many_entries(path: Path, n: int, big: bool) -> Path:
    """``n`` entries, every tenth one of 8 KB, so a walk over the headers skips whole pages."""
    small, page = np.arange(4, dtype=np.float32).tobytes(), np.ones(2048, np.float32).tobytes()
    with open(path, "wb") as f:
        for i in range(n):
            f.write(entry(f"layers.{i // 100}.w{i % 100}", [2048] if i % 10 == 0 else [4], "Float32",
                          page if i % 10 == 0 else small))  # fmt: skip
        if big:
            f.write(entry("big", [1 << 22], "Float32", np.ones(1 << 22, np.float32).tobytes()))
    return path


@pytest.mark.parametrize(("fmt", "what"), [("ckpt", "index"), ("ckpt", "values"), ("safetensors", "values")])
def test_a_file_truncated_while_it_is_read_ends_the_reader_with_an_error_not_a_signal(tmp_path, fmt, what):
    """A checkpoint rewritten by a training job under a reader: with a memory map this was SIGBUS."""
    if fmt == "ckpt":
        path = _many_entries(tmp_path / "live.ckpt", 100_000 if what == "index" else 10, big=what == "values")
    else:
        big = np.ones(1 << 22, np.float32).tobytes()
        path = write_safetensors(tmp_path / "live.safetensors", {"big": ("F32", [1 << 22], big)})
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), what],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # well inside the reading loop
        os.truncate(path, path.stat().st_size // 2)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode >= 0, f"killed by signal {signal.Signals(-child.returncode).name}"
    assert child.returncode == 3, err
    assert str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("change", ["truncated", "appended", "replaced"])
def test_every_reader_refuses_a_file_changed_after_indexing(tmp_path, fmt, change):
    values = np.arange(64, dtype=np.float32)
    if fmt == "ckpt":
        path = write_ckpt(tmp_path / "w.ckpt", [("w", [64], "Float32", values.tobytes())])
    else:
        path = write_safetensors(tmp_path / "w.safetensors", {"w": ("F32", [64], values.tobytes())})
    readers = {
        "value": lambda ck: ck["w"],
        "chunks": lambda ck: [c.copy() for c in ck.iter_chunks("w", 8)],
        "preview": lambda ck: ck.preview("w", 4),
        "stats": lambda ck: ck.stats("w", chunk_elements=8),
        "describe": lambda ck: ck.describe("w", 7),
        "histogram": lambda ck: ck.histogram("w", bins=5, range=(0, 1)),
    }
    for name, read in readers.items():
        ck = open_checkpoint(path)
        original = path.read_bytes()
        if change == "truncated":
            os.truncate(path, len(original) - 16)
        elif change == "appended":
            with open(path, "ab") as f:
                f.write(b"\0" * 16)
        else:
            other = tmp_path / "other"
            other.write_bytes(original)
            os.replace(other, path)  # same bytes, another file
        with pytest.raises(CheckpointError, match=r"changed after it was opened|removed") as err:
            read(ck)
        assert str(path) in str(err.value), name
        path.write_bytes(original)


# --- scale: names repeated, deep, many ---------------------------------------------------------------------


def test_non_consecutive_repeated_names_keep_the_later_value_at_the_first_place(tmp_path):
    """load_checkpoint fills a dict: a repeated tag keeps its first position and takes the later value."""
    n = 30_000  # with list.index this was quadratic: minutes
    rows = [(f"w{i}", [1], "Int32", np.int32(i).tobytes()) for i in range(n)]
    rows += [(f"w{i}", [1], "Int32", np.int32(-i).tobytes()) for i in range(0, n, 3)]
    ck = open_checkpoint(write_ckpt(tmp_path / "dup.ckpt", rows))
    assert list(ck)[:4] == ["w0", "w1", "w2", "w3"] and len(ck) == n
    assert int(ck["w3"][0]) == -3 and int(ck["w4"][0]) == 4


def test_a_forty_kilobyte_dotted_name_is_a_tree_of_bounded_depth(tmp_path):
    ck = open_checkpoint(write_ckpt(tmp_path / "deep.ckpt", [(DEEP, [2], "Float32", bytes(8)),
                                                             ("a.b", [1], "Float32", bytes(4))]))  # fmt: skip
    root = ck.tree()
    node = root[DEEP]
    assert node.info is not None and node.info.name == DEEP and not node.children
    assert node.depth == 31 and node.name == DEEP.split(".", 31)[-1]  # the last level keeps the rest
    assert node.parent.path == ".".join(["a"] * 31)
    text = ck.summary(depth=None)
    assert len(text) < 200_000 and DEEP.split(".", 31)[-1] in text
    dumped = json.dumps(root.to_dict())
    assert len(dumped) < 2_000_000
    model = TreeModel(ck.entries)
    assert [row["id"] for row in model.rows()] == ["a"]
    model.reveal(DEEP)
    ids = [row["id"] for row in model.rows()]
    assert len(ids) == 33 and ids[31] == DEEP and ids[32] == "a.b"  # 31 levels open, the leaf, then a.b


def test_two_hundred_thousand_entries_are_listed_and_nested(tmp_path):
    """Scale without a quadratic path anywhere (the time and memory figures are in bench_index.py)."""
    path = tmp_path / "many.ckpt"
    content = bytes(8)
    with open(path, "wb") as f:
        for block in range(20):
            f.write(b"".join(entry(f"m.{block}.l{i}.w", [2], "Float32", content) for i in range(10_000)))
    ck = open_checkpoint(path)
    assert len(ck) == 200_000 and ck.info("m.19.l9999.w").shape == (2,)
    assert ck.tree()["m.10"].tensors == 10_000
    assert [c.name for c in ck.tree()["m"]][:3] == ["0", "1", "2"]  # natural order: 2 before 10


# --- odd but legal values ----------------------------------------------------------------------------------


@pytest.fixture
def odd(tmp_path) -> Path:
    huge = np.array([1.7e308, -1.7e308, 1.0e308, -0.5e308, 3.0], np.float64)
    bf = np.array([1.0, np.nan, -2.0, np.inf, 0.0, np.nan], np.float32).astype(ml_dtypes.bfloat16)
    return write_ckpt(tmp_path / "odd.ckpt", [
        ("huge", [5], "Float64", huge.tobytes()),
        ("dims40", [1] * 39 + [3], "Float32", np.array([1, 2, 3], np.float32).tobytes()),
        ("empty", [0, (1 << 63) - 1], "Float32", b""),
        ("bf", [6], "BFloat16", bf.tobytes()),
        ("allnan", [2], "Float32", np.array([np.nan, np.nan], np.float32).tobytes()),
        ("const_huge", [3], "Float64", np.full(3, 1e308).tobytes()),
    ])  # fmt: skip


def test_float64_near_the_limit_gets_exact_statistics_and_a_finite_histogram(odd):
    ck = open_checkpoint(odd)
    values = [1.7e308, -1.7e308, 1.0e308, -0.5e308, 3.0]
    s = ck.stats("huge")
    scaled = np.array(values) / 2**1000
    assert s.mean == pytest.approx(float(scaled.mean()) * 2**1000, rel=1e-12)
    assert s.std == pytest.approx(float(scaled.std()) * 2**1000, rel=1e-12)
    assert (s.min, s.max) == (-1.7e308, 1.7e308)
    counts, edges = ck.histogram("huge", bins=4)
    assert counts.tolist() == [1, 1, 1, 2] and np.isfinite(edges).all()
    assert edges[0] == -1.7e308 and edges[-1] == 1.7e308
    summary = ck.describe("huge", 4)
    assert summary.counts.sum() == 5 and np.isfinite(summary.edges).all()
    c = ck.describe("const_huge", 3)
    assert c.stats.std == 0 and c.counts.tolist() == [0, 3, 0] and np.isfinite(c.edges).all()


def test_shapes_numpy_cannot_hold_are_summarised_flat_and_refused_as_arrays(odd):
    ck = open_checkpoint(odd)
    assert ck.info("dims40").ndim == 40 and ck.stats("dims40").mean == 2.0
    assert ck.preview("dims40", 2).tolist() == [1.0, 2.0]
    with pytest.raises(CheckpointError, match="40 dims"):
        ck["dims40"]
    assert ck.info("empty").numel == 0 and ck.stats("empty").count == 0
    assert ck.preview("empty", 3).size == 0
    with pytest.raises(CheckpointError, match="cannot be held"):
        ck["empty"]


def test_bfloat16_with_nan_and_all_nan_tensors_summarise_without_warnings(odd):
    ck = open_checkpoint(odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ck.stats("bf")
        counts, edges = ck.histogram("bf", bins=3)
        n = ck.stats("allnan")
        ck.describe("allnan")
    assert (s.nan_count, s.inf_count, s.count) == (2, 1, 6)
    assert s.mean == pytest.approx(-1 / 3) and s.zero_fraction == pytest.approx(1 / 6)
    assert counts.tolist() == [1, 0, 2] and edges.tolist() == [-2.0, -1.0, 0.0, 1.0]
    assert n.nan_count == 2 and np.isnan(n.mean)


def test_big_tensor_statistics_match_numpy_and_the_histogram_is_exact_on_its_edges(tmp_path):
    """Over several chunks (float32): figures as NumPy computes them; counts exact for the edges given."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(5_000_000) * 3 + 100).astype(np.float32)
    x[::1000] = 0
    path = write_ckpt(tmp_path / "big.ckpt", [("x", [x.size], "Float32", x.tobytes())])
    ck = open_checkpoint(path)
    summary = ck.describe("x", 40)
    ref = x.astype(np.float64)
    assert summary.stats.mean == pytest.approx(ref.mean(), rel=1e-9)
    assert summary.stats.std == pytest.approx(ref.std(), rel=1e-9)
    assert summary.stats.mean_abs == pytest.approx(np.abs(ref).mean(), rel=1e-9)
    assert (summary.stats.min, summary.stats.max) == (float(x.min()), float(x.max()))
    assert summary.stats.zero_fraction == pytest.approx(np.count_nonzero(x == 0) / x.size)
    edges = summary.edges
    assert edges[0] <= x.min() and edges[-1] >= x.max()
    assert (edges[-1] - edges[0]) <= 1.01 * (float(x.max()) - float(x.min()))  # snug around the values
    assert np.array_equal(summary.counts, np.histogram(ref, bins=edges)[0])
    counts, hist_edges = ck.histogram("x", bins=40)  # describe's, from the cache
    assert np.array_equal(counts, summary.counts) and np.array_equal(hist_edges, edges)
    s = ck.stats("x")
    counts, np_edges = ck.histogram("x", bins=40, range=(s.min, s.max))  # numpy's own edges: one more pass
    ref_counts, ref_edges = np.histogram(ref, bins=40)
    assert np.array_equal(counts, ref_counts) and np.allclose(np_edges, ref_edges)


@pytest.mark.parametrize("dtype", ["Float32", "BFloat16"])
def test_stats_then_histograms_of_any_bins_read_the_tensor_once(tmp_path, monkeypatch, dtype):
    """The README's two calls, then other bin counts in any order: one pass over the bytes, exact counts."""
    import ms_notebook.checkpoint.index as index

    rng = np.random.default_rng(2)
    np_dtype = np.float32 if dtype == "Float32" else ml_dtypes.bfloat16
    x = (rng.standard_normal(5_000_000) * 0.02).astype(np_dtype)
    path = write_ckpt(tmp_path / "w.ckpt", [("w", [x.size], dtype, x.tobytes())])
    passes = []
    real = index.reader.iter_value

    def counted(*args, **kwargs):
        passes.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(index.reader, "iter_value", counted)
    ck = open_checkpoint(path)
    ref = x.astype(np.float64)
    s = ck.stats("w")
    assert (s.min, s.max) == (float(ref.min()), float(ref.max()))
    for bins in (50, 7, 200, 50, 1):
        counts, edges = ck.histogram("w", bins=bins)
        assert len(counts) == bins and counts.sum() == x.size
        assert np.array_equal(counts, np.histogram(ref, bins=edges)[0])
        assert edges[0] <= ref.min() and edges[-1] >= ref.max()
        assert (edges[-1] - edges[0]) <= 1.01 * (ref.max() - ref.min())
        if dtype == "BFloat16":  # counted per value: numpy's own edges
            assert np.allclose(edges, np.histogram(ref, bins=bins)[1])
    assert ck.describe("w", 33).stats == s
    assert len(passes) == 1


def test_the_second_summary_is_served_from_the_cache_shared_by_all_checkpoint_objects(tmp_path):
    x = np.arange(3_000_000, dtype=np.float32)
    path = write_ckpt(tmp_path / "c.ckpt", [("x", [x.size], "Float32", x.tobytes())])
    first = open_checkpoint(path)
    assert not first.is_described("x", 33)
    summary = first.describe("x", 33)
    second = open_checkpoint(path)  # another object over the same file: the same answer, nothing read
    assert second.is_described("x", 33) and second.describe("x", 33) is summary
    shutil.copy(path, tmp_path / "copy.ckpt")
    os.replace(tmp_path / "copy.ckpt", path)  # a new file: a new key
    assert not open_checkpoint(path).is_described("x", 33)


def test_cli_inspects_a_forty_kilobyte_name(tmp_path):
    path = write_ckpt(tmp_path / "deep.ckpt", [(DEEP, [2], "Float32", bytes(8))])
    for args in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "ms_notebook", "inspect", str(path), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert DEEP.split(".", 31)[-1] in proc.stdout
    assert json.loads(proc.stdout)["tree"]["tensors"] == 1 and len(proc.stdout) < 2_000_000
