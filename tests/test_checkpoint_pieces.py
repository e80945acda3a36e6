"""Values assembled from slices in several files (the storage under per-rank checkpoint sets).

Slices of real arrays are written as raw files; the index describes them as pieces; every reader (whole value,
C-order chunks of any size, preview, statistics, diff) must give exactly what NumPy gives for the full array.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ms_notebook.checkpoint import Checkpoint, CheckpointError
from ms_notebook.checkpoint.diff import diff
from ms_notebook.checkpoint.formats import Piece, RawEntry, RawIndex
from ms_notebook.checkpoint.reader import c_order_boxes


def _write_pieces(folder: Path, full: np.ndarray, cuts: list[int], tag: str) -> list[Piece]:
    """Cut ``full`` into a grid (``cuts[k]`` equal parts along dim k), one raw file per piece, with a few
    junk bytes in front so offsets are not zero."""
    pieces = []
    ranges = []
    for d, n in zip(full.shape, cuts, strict=True):
        step = d // n
        ranges.append([(i * step, (i + 1) * step) for i in range(n)])
    for i, box in enumerate(itertools.product(*ranges)):
        block = np.ascontiguousarray(full[tuple(slice(a, b) for a, b in box)])
        path = folder / f"{tag}-{i}.bin"
        path.write_bytes(b"junk!" + block.tobytes())
        # two spans per piece where possible, as MindSpore writes tensors over 512 MiB
        n = block.nbytes
        half = (n // 2) // block.itemsize * block.itemsize
        spans = [(5, half), (5 + half, n - half)] if half else [(5, n)]
        pieces.append(Piece(str(path), spans, tuple(box)))
    return pieces


def _set(folder: Path, arrays: dict[str, tuple[np.ndarray, list[int]]]) -> Checkpoint:
    entries, files = [], []
    for name, (full, cuts) in arrays.items():
        pieces = _write_pieces(folder, full, cuts, name)
        files += [p.file for p in pieces]
        ms_dtype = {"float32": "Float32", "int32": "Int32", "float16": "Float16"}[str(full.dtype)]
        entries.append(RawEntry(name, full.shape, ms_dtype, "tensor", [], full.nbytes, pieces=pieces))
    return Checkpoint.from_index(folder, RawIndex("test-set", entries, files=files))


def test_boxes_cover_the_shape_once_in_c_order():
    shape = (3, 5, 7)
    for chunk in (1, 4, 7, 35, 36, 105, 1000):
        flat = []
        for box in c_order_boxes(shape, chunk):
            idx = np.arange(105).reshape(shape)[tuple(slice(a, b) for a, b in box)]
            assert idx.size <= max(chunk, 7)
            flat.extend(idx.reshape(-1).tolist())
        assert flat == list(range(105))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(lambda dims: [d * 2 for d in dims]),
    split_axis=st.integers(0, 2),
    chunk=st.integers(1, 50),
)
def test_assembled_value_equals_the_full_array(tmp_path_factory, shape, split_axis, chunk):
    folder = tmp_path_factory.mktemp("set")
    full = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * 0.5 - 3
    cuts = [1] * len(shape)
    cuts[split_axis % len(shape)] = 2
    ck = _set(folder, {"w": (full, cuts)})
    np.testing.assert_array_equal(ck["w"], full)
    chunks = [c.copy() for c in ck.iter_chunks("w", chunk_elements=chunk)]
    np.testing.assert_array_equal(np.concatenate(chunks), full.reshape(-1))
    np.testing.assert_array_equal(ck.preview("w", 7), full.reshape(-1)[:7])


def test_grid_of_slices_statistics_and_diff_across_layouts(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.standard_normal((8, 12)).astype(np.float32)
    ck = _set(tmp_path, {"w": (full, [2, 3])})
    stats = ck.stats("w", chunk_elements=5)
    assert stats.count == full.size
    assert stats.mean == pytest.approx(float(full.astype(np.float64).mean()))
    assert stats.max == pytest.approx(float(full.max()))
    counts, edges = ck.histogram("w", bins=10)
    np.testing.assert_array_equal(counts, np.histogram(full, bins=edges)[0])
    other = tmp_path / "other"
    other.mkdir()
    moved = _set(other, {"w": (full + 1.0, [4, 1])})
    row = diff(ck, moved).rows[0]
    assert row.rel_change == pytest.approx(
        float(np.linalg.norm(np.ones_like(full)) / np.linalg.norm(full.astype(np.float64))), rel=1e-6
    )


def test_a_slice_file_truncated_after_opening_is_an_error(tmp_path):
    full = np.arange(24, dtype=np.int32).reshape(4, 6)
    ck = _set(tmp_path, {"w": (full, [1, 2])})
    victim = Path(ck.files[1])
    victim.write_bytes(victim.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="changed after it was opened"):
        ck["w"]
