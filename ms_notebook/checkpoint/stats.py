"""Summary statistics and histograms of a tensor computed chunk by chunk in float64.

Memory stays bounded (one chunk at a time) whatever the tensor's size. Mean and standard deviation are merged
across chunks with Chan et al.'s parallel update, which stays accurate where a naive sum of squares does not.
NaN and Inf are counted and left out of every other figure; complex tensors are summarised by magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorStats:
    """Figures over the finite values of one tensor (NaN and Inf only counted)."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    mean_abs: float
    zero_fraction: float
    nan_count: int
    inf_count: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _as_real(chunk: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(chunk):
        return np.abs(chunk).astype(np.float64)
    return chunk.astype(np.float64)


def _finite(chunks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, int, int, int]]:
    """Yield (finite float64 values, zero count over all values, nan count, inf count) per chunk."""
    for raw in chunks:
        x = _as_real(raw)
        zeros = int(np.count_nonzero(raw == 0))
        finite = np.isfinite(x)
        if finite.all():
            yield x, zeros, 0, 0
        else:
            nans = int(np.count_nonzero(np.isnan(x)))
            yield x[finite], zeros, nans, int(x.size - np.count_nonzero(finite) - nans)


def compute_stats(chunks: Iterable[np.ndarray]) -> TensorStats:
    """Stats over a tensor given as a stream of flat chunks."""
    total = n = 0
    mean = m2 = abs_sum = 0.0
    lo, hi = math.inf, -math.inf
    zeros = nans = infs = 0
    for x, z, nan, inf in _finite(chunks):
        size = x.size + nan + inf
        total += size
        zeros += z
        nans += nan
        infs += inf
        if not x.size:
            continue
        cmean = float(x.mean())
        cm2 = float(np.square(x - cmean).sum())
        k = x.size
        delta = cmean - mean
        new_n = n + k
        mean += delta * k / new_n
        m2 += cm2 + delta * delta * n * k / new_n
        n = new_n
        abs_sum += float(np.abs(x).sum())
        lo = min(lo, float(x.min()))
        hi = max(hi, float(x.max()))
    nan_value = math.nan
    return TensorStats(
        count=total,
        mean=mean if n else nan_value,
        std=math.sqrt(m2 / n) if n else nan_value,
        min=lo if n else nan_value,
        max=hi if n else nan_value,
        mean_abs=abs_sum / n if n else nan_value,
        zero_fraction=zeros / total if total else nan_value,
        nan_count=nans,
        inf_count=infs,
    )


def compute_histogram(
    chunks: Iterable[np.ndarray], bins: int, value_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges over finite values in ``value_range``, same bins as ``numpy.histogram``."""
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.histogram_bin_edges(np.empty(0), bins=bins, range=(lo, hi))
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for x, *_ in _finite(chunks):
        if x.size:
            counts += np.histogram(x, bins=edges)[0]
    return counts, edges
