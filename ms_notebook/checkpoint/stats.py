"""Statistics and a histogram of a tensor from one pass over its bytes, in bounded memory.

``summarize`` reads the stream of chunks once and returns ``TensorStats`` plus ``(counts, edges)``:

- values of 1 or 2 bytes (bool, int8/16, uint8/16, float16, bfloat16) are counted per distinct bit pattern
  (at most 65,536 counters); every figure and the histogram then follow exactly from those counts;
- a tensor that fits in one chunk is summarised from the chunk in hand, exactly;
- otherwise (4- and 8-byte values over several chunks) mean and variance are merged across blocks with
  Chan et al.'s parallel update (in float64, around each block's own mean, so values near 1e4 with spread 3
  keep their digits), and the histogram is counted on a fine grid of 65,536 bins that doubles its width
  when a value falls outside it; the answer's ``bins`` bins are whole runs of grid bins, so the counts are
  exact and the edges enclose [min, max] snugly (within a fraction of a percent of the range) instead of
  sitting exactly on min and max.

Exact edges follow ``numpy.histogram``'s rule (equal bins over [min, max], the last one closed), computed
without overflow, so float64 values near ±1e308 work. NaN and Inf are counted and left out of every other
figure; complex tensors are summarised by magnitude. No warnings: every operation runs under ``errstate``.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import ml_dtypes
import numpy as np

from .errors import Cancelled

BLOCK = 1 << 18  # elements per inner block: temporaries stay in the CPU cache
GRID = 1 << 16  # bins of the fine histogram of large tensors
_HUGE = 2.0**500  # values above this are summed scaled down by a power of two (no overflow in squares)
_BF16 = np.dtype(ml_dtypes.bfloat16)


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


# --- numpy.histogram's bins, without overflow ----------------------------------------------------------


def hist_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """``numpy.histogram``'s edges for ``range=(lo, hi)``: equal bins, widened by 0.5 when lo == hi."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
        if lo == hi:  # too large for ±0.5 to change it
            lo, hi = lo - abs(lo) * 2.0**-20, hi + abs(hi) * 2.0**-20
    with np.errstate(all="ignore"):
        if math.isfinite(hi - lo):
            return np.linspace(lo, hi, bins + 1)
        t = np.arange(bins + 1, dtype=np.float64) / bins
        edges = lo * (1.0 - t) + hi * t
    edges[0], edges[-1] = lo, hi
    return edges


def bin_counts(x: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Counts of finite float64 values ``x`` per bin of ``edges`` (equal bins), as ``numpy.histogram``:
    ``[e_i, e_i+1)``, the last bin closed; values outside the edges are not counted."""
    bins = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    with np.errstate(all="ignore"):
        keep = (x >= lo) & (x <= hi)
        if not keep.all():
            x = x[keep]
            weights = weights[keep] if weights is not None else None
        if math.isfinite(hi - lo):
            f = (x - lo) * (bins / (hi - lo))
        else:
            f = (x * 0.5 - lo * 0.5) * (bins / (hi * 0.5 - lo * 0.5))
        idx = f.astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    # the estimate is within one bin: settle it against the edges, as numpy does
    idx[x < edges[idx]] -= 1
    idx[(x >= edges[idx + 1]) & (idx != bins - 1)] += 1
    counts = np.bincount(idx, weights=weights, minlength=bins)
    return np.rint(counts).astype(np.int64) if weights is not None else counts.astype(np.int64)


# --- the accumulators ------------------------------------------------------------------------------------


class _Moments:
    """Count, mean, M2, sum |x|, min, max of finite values merged block by block (Chan et al.), scaled by
    ``2**-shift`` once a value above 2**500 is seen so squares cannot overflow."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = self.m2 = self.abs_sum = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.shift = 0

    def rescale(self, shift: int) -> None:
        if shift > self.shift:
            d = shift - self.shift
            self.mean = math.ldexp(self.mean, -d)
            self.m2 = math.ldexp(self.m2, -2 * d)
            self.abs_sum = math.ldexp(self.abs_sum, -d)
            self.shift = shift

    def merge(self, k: int, cmean: float, cm2: float, cabs: float, lo: float, hi: float) -> None:
        """Add a block of ``k`` values (its mean, M2 and sum |x| already in this accumulator's scale)."""
        if not k:
            return
        delta = cmean - self.mean
        new_n = self.n + k
        self.mean += delta * k / new_n
        self.m2 += cm2 + delta * delta * self.n * k / new_n
        self.abs_sum += cabs
        self.n = new_n
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)

    def add_finite(self, x: np.ndarray) -> None:
        """A block of finite float64 values, any magnitude."""
        if not x.size:
            return
        lo, hi = float(x.min()), float(x.max())
        top = max(abs(lo), abs(hi))
        if top > _HUGE:
            self.rescale(math.frexp(top)[1] - 500)
        xs = np.ldexp(x, -self.shift) if self.shift else x
        cmean = float(xs.mean())
        d = xs - cmean
        self.merge(x.size, cmean, float(np.dot(d, d)), float(np.abs(xs).sum()), lo, hi)

    def result(self, total: int, zeros: int, nans: int, infs: int) -> TensorStats:
        n = self.n
        nan = math.nan
        s = self.shift
        return TensorStats(
            count=total,
            mean=math.ldexp(self.mean, s) if n else nan,
            std=math.ldexp(math.sqrt(max(self.m2, 0.0) / n), s) if n else nan,
            min=self.lo if n else nan,
            max=self.hi if n else nan,
            mean_abs=math.ldexp(self.abs_sum / n, s) if n else nan,
            zero_fraction=zeros / total if total else nan,
            nan_count=nans,
            inf_count=infs,
        )


class _Grid:
    """A histogram of ``GRID`` equal bins of width ``w`` (a power of two) from ``lo`` (a multiple of ``w``)
    that doubles its width to take in values outside it: every old bin falls inside one new bin, so the
    counts stay exact."""

    def __init__(self) -> None:
        self.lo = 0.0
        self.w = 0.0
        self.counts: np.ndarray | None = None

    def _fits(self, lo: float, hi: float, w: float) -> tuple[bool, float]:
        start = math.floor(lo / w) * w
        return hi < start + GRID * w, start

    def cover(self, lo: float, hi: float) -> None:
        if self.counts is None:
            span = _span(lo, hi)
            width = span / (GRID - 2) if span > 0 else max(abs(lo), 2.0**-1000) * 2.0**-20
            w = 2.0 ** math.ceil(math.log2(max(width, 2.0**-1060)))
            fits, start = self._fits(lo, hi, w)
            while not fits:
                w *= 2
                fits, start = self._fits(lo, hi, w)
            self.lo, self.w = start, w
            self.counts = np.zeros(GRID + 1, dtype=np.int64)
            return
        if lo >= self.lo and hi < self.lo + GRID * self.w:
            return
        lo, hi = min(lo, self.lo), max(hi, self.lo + GRID * self.w - self.w)
        w = self.w
        fits = False
        while not fits:
            w *= 2
            fits, start = self._fits(lo, hi, w)
        shift = round(math.log2(w / self.w))
        offset = round((self.lo - start) / self.w)  # whole old bins between the new start and the old one
        target = (np.arange(GRID + 1, dtype=np.int64) + offset) >> shift
        merged = np.bincount(target, weights=self.counts.astype(np.float64), minlength=GRID + 1)
        self.counts = np.rint(merged[: GRID + 1]).astype(np.int64)
        self.lo, self.w = start, w

    def add(self, x: np.ndarray) -> None:
        """Count finite values already inside the grid (``cover`` was called with their min and max).

        A value's bin is ``floor(x / w) - lo / w``: ``w`` is a power of two, so ``x / w`` is exact (no
        rounding near a bin's edge, as ``x - lo`` would have for values far smaller than ``lo``) and
        ``lo / w`` is a whole number. float32 values are scaled in float32 when nothing can underflow.
        """
        assert self.counts is not None
        lo, w = self.lo, self.w
        first = lo / w  # a whole number: lo is a multiple of w
        with np.errstate(all="ignore"):
            if abs(first) < 2.0**60 and 2.0**-120 <= w <= 1.0 and x.dtype == np.float32:
                t = np.multiply(x, np.float32(1.0 / w))
            elif abs(first) < 2.0**60 and 2.0**-1000 <= w < 2.0**900:
                t = np.multiply(x, 1.0 / w, dtype=np.float64)
            else:
                t = None
            if t is not None:
                np.floor(t, out=t)
                if w > 1.0:  # a tiny negative value scaled to -0.0 lies below the edge at 0
                    t[(t == 0) & (x < 0)] = -1.0
                idx = t.astype(np.intp)
                idx -= int(first)
            else:
                idx = ((x * 0.5 - lo * 0.5) / (w * 0.5)).astype(np.intp)
        try:
            counts = np.bincount(idx, minlength=GRID + 1)
        except ValueError:  # a negative index: not reached by the arithmetic above, kept as a guard
            counts = np.bincount(np.clip(idx, 0, GRID), minlength=GRID + 1)
        if counts.size > GRID + 1:  # likewise past the top
            counts[GRID] += counts[GRID + 1 :].sum()
            counts = counts[: GRID + 1]
        self.counts += counts

    def rescale(self, d: int) -> None:
        """Values are now counted ``2**-d`` times as large: the same bins, in the new units."""
        self.lo = math.ldexp(self.lo, -d)
        self.w = max(math.ldexp(self.w, -d), 2.0**-1060)

    def histogram(self, bins: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
        """``bins`` equal bins made of whole runs of grid bins, from the first to the last one used."""
        assert self.counts is not None
        used = np.flatnonzero(self.counts)
        if not used.size:
            return np.zeros(bins, dtype=np.int64), hist_edges(0.0, 1.0, bins)
        first, last = int(used[0]), int(used[-1])
        run = -(-(last - first + 1) // bins)
        counts = np.zeros(run * bins, dtype=np.int64)
        part = self.counts[first : first + run * bins]
        counts[: part.size] = part
        counts = counts.reshape(bins, run).sum(axis=1)
        with np.errstate(over="ignore"):
            j = np.arange(bins + 1, dtype=np.float64)
            edges = np.ldexp(self.lo + (first + j * run) * self.w, shift)
        top = np.finfo(np.float64).max
        np.clip(edges, -top, top, out=edges)
        return counts, edges


_HELPERS: ThreadPoolExecutor | None = None
_HELPERS_LOCK = threading.Lock()


def _helper() -> ThreadPoolExecutor:
    """Threads that count histograms beside the moments (two: the server may summarise two at once)."""
    global _HELPERS
    with _HELPERS_LOCK:
        if _HELPERS is None:
            _HELPERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ms-notebook-histogram")
        return _HELPERS


def _span(lo: float, hi: float) -> float:
    with np.errstate(over="ignore"):
        span = hi - lo
    return span if math.isfinite(span) else (hi * 0.5 - lo * 0.5) * 2.0


# --- summarising ---------------------------------------------------------------------------------------


def _as_float(raw: np.ndarray) -> np.ndarray:
    """A chunk as float32 or float64 values (complex: magnitude; integers: float64)."""
    if raw.dtype.kind == "c":
        return np.abs(raw).astype(np.float64)
    if raw.dtype == np.float32 or raw.dtype == np.float64:
        return raw
    return raw.astype(np.float64)


def _decode(dtype: np.dtype) -> np.ndarray:
    """The float64 value of every bit pattern of a 1- or 2-byte dtype, indexed by the pattern."""
    bits = np.dtype(f"u{dtype.itemsize}")
    codes = np.arange(1 << (8 * dtype.itemsize), dtype=np.int64).astype(bits)
    if dtype.kind == "b":
        return (codes != 0).astype(np.float64)
    with np.errstate(all="ignore"):
        return codes.view(dtype).astype(np.float64)


def _from_value_counts(
    values: np.ndarray, counts: np.ndarray, bins: int
) -> tuple[TensorStats, np.ndarray, np.ndarray]:
    """Exact figures and ``numpy.histogram`` bins from how often each distinct value occurs."""
    total = int(counts.sum())
    nan_mask = np.isnan(values)
    inf_mask = np.isinf(values)
    finite = ~(nan_mask | inf_mask) & (counts > 0)
    v, c = values[finite], counts[finite].astype(np.float64)
    m = _Moments()
    if v.size:
        n = float(c.sum())
        mean = float(np.dot(v, c) / n)
        d = v - mean
        m.merge(
            int(n), mean, float(np.dot(d * d, c)), float(np.dot(np.abs(v), c)), float(v.min()), float(v.max())
        )
    stats = m.result(
        total, int(counts[values == 0].sum()), int(counts[nan_mask].sum()), int(counts[inf_mask].sum())
    )
    if not v.size:
        return stats, np.zeros(bins, dtype=np.int64), hist_edges(0.0, 1.0, bins)
    edges = hist_edges(stats.min, stats.max, bins)
    return stats, bin_counts(v, edges, c), edges


class _Summary:
    """One pass over 4- or 8-byte values (or anything complex).

    Per chunk, the histogram of its clean blocks (finite, not huge) is counted on a helper thread while this
    thread merges their moments: NumPy releases the GIL in both, so with a spare core the two overlap.
    Blocks holding NaN, Inf or values above 2**500 are then taken one by one on the careful path.
    """

    def __init__(self) -> None:
        self.m = _Moments()
        self.grid = _Grid()
        self.total = self.zeros = self.nans = self.infs = 0

    def chunk(self, x: np.ndarray) -> None:
        """One chunk of float32/float64 values."""
        clean, dirty = [], []
        with np.errstate(all="ignore"):
            for start in range(0, x.size, BLOCK):
                b = x[start : start + BLOCK]
                lo, hi = float(b.min()), float(b.max())  # NaN when the block holds one
                ok = math.isfinite(lo) and math.isfinite(hi) and max(-lo, hi) <= _HUGE and not self.m.shift
                (clean if ok else dirty).append((b, lo, hi))
        if clean:
            counting = _helper().submit(self._count_blocks, clean)
            try:
                for b, lo, hi in clean:
                    self._moments(b, lo, hi)
            finally:
                counting.result()
        for b, _, _ in dirty:
            self._careful(b)

    def _count_blocks(self, blocks: list[tuple[np.ndarray, float, float]]) -> None:
        for b, lo, hi in blocks:
            self._count(b, lo, hi)

    def _moments(self, x: np.ndarray, lo: float, hi: float) -> None:
        """A finite block: sums around its first value, exact differences in float64 (values near 1e4 with
        spread 3 keep their digits)."""
        n = x.size
        self.total += n
        with np.errstate(all="ignore"):
            self.zeros += int(np.count_nonzero(x == 0))
            center = float(x[0])
            d = np.subtract(x, x[0], dtype=np.float64)
            sd = float(d.sum())
            cm2 = float(np.dot(d, d)) - sd * sd / n
            if sd * sd / n > 1e6 * cm2:  # the first value is far out: centre on the mean instead
                d -= sd / n
                cm2 = float(np.dot(d, d))
            cabs = float(np.add.reduce(np.abs(x), dtype=np.float64))
        self.m.merge(n, center + sd / n, cm2, cabs, lo, hi)

    def _careful(self, x: np.ndarray) -> None:
        """A block with NaN, Inf or huge values: counted, masked and scaled in float64."""
        n = x.size
        self.total += n
        with np.errstate(all="ignore"):
            self.zeros += int(np.count_nonzero(x == 0))
            x64 = x.astype(np.float64)
            finite = np.isfinite(x64)
            if not finite.all():
                nans = int(np.count_nonzero(np.isnan(x64)))
                self.nans += nans
                self.infs += n - int(np.count_nonzero(finite)) - nans
                x64 = x64[finite]
            if not x64.size:
                return
            before = self.m.shift
            self.m.add_finite(x64)
            if self.m.shift != before and self.grid.counts is not None:
                self.grid.rescale(self.m.shift - before)
            xs = np.ldexp(x64, -self.m.shift) if self.m.shift else x64
            self._count(xs, float(xs.min()), float(xs.max()))

    def _count(self, x: np.ndarray, lo: float, hi: float) -> None:
        self.grid.cover(lo, hi)
        self.grid.add(x)

    def result(self, bins: int) -> tuple[TensorStats, np.ndarray, np.ndarray]:
        stats = self.m.result(self.total, self.zeros, self.nans, self.infs)
        if not self.m.n:
            return stats, np.zeros(bins, dtype=np.int64), hist_edges(0.0, 1.0, bins)
        if stats.min == stats.max:  # one distinct value: numpy's ±0.5 bins, exactly
            edges = hist_edges(stats.min, stats.max, bins)
            return stats, bin_counts(np.array([stats.min]), edges, np.array([float(self.m.n)])), edges
        counts, edges = self.grid.histogram(bins, self.m.shift)
        return stats, counts, edges


def _exact(chunk: np.ndarray, bins: int) -> tuple[TensorStats, np.ndarray, np.ndarray]:
    """Figures and ``numpy.histogram`` bins of a tensor held in one chunk."""
    with np.errstate(all="ignore"):
        x = _as_float(chunk).astype(np.float64)
        finite = np.isfinite(x)
        nans = int(np.count_nonzero(np.isnan(x)))
        infs = x.size - int(np.count_nonzero(finite)) - nans
        zeros = int(np.count_nonzero(x == 0))
        xf = x if not nans and not infs else x[finite]
    m = _Moments()
    for start in range(0, xf.size, BLOCK):
        m.add_finite(xf[start : start + BLOCK])
    stats = m.result(x.size, zeros, nans, infs)
    if not xf.size:
        return stats, np.zeros(bins, dtype=np.int64), hist_edges(0.0, 1.0, bins)
    edges = hist_edges(stats.min, stats.max, bins)
    return stats, bin_counts(xf, edges), edges


class Sketch:
    """What one pass over a tensor keeps so that a histogram of any number of bins follows without reading
    the bytes again: how often each distinct value occurs (1- and 2-byte values; exact ``numpy.histogram``
    bins) or the fine grid with the merged moments (4- and 8-byte values over several chunks; exact counts,
    snug edges). ``nbytes`` is what it holds, for the cache's bound."""

    def __init__(
        self, binner: Callable[[int], tuple[TensorStats, np.ndarray, np.ndarray]], exact: bool, nbytes: int
    ) -> None:
        self._binner = binner
        self.exact = exact
        self.nbytes = nbytes

    def summary(self, bins: int) -> tuple[TensorStats, np.ndarray, np.ndarray, bool]:
        """``(stats, counts, edges, exact)`` for ``bins`` bins, as ``summarize`` answers, without a pass."""
        return (*self._binner(max(1, int(bins))), self.exact)


def _value_sketch(values: np.ndarray, counts: np.ndarray) -> Sketch:
    """A sketch of the values that occur (the others dropped: at most 65,536 of each)."""
    used = counts > 0
    v, c = values[used].copy(), counts[used].copy()
    return Sketch(lambda bins: _from_value_counts(v, c, bins), True, v.nbytes + c.nbytes)


def _grid_sketch(acc: _Summary) -> Sketch:
    grid = acc.grid
    if grid.counts is not None:  # the smallest integers that hold every count
        grid.counts = grid.counts.astype(np.int32 if acc.total < 2**31 else np.int64)
    held = grid.counts.nbytes if grid.counts is not None else 0
    return Sketch(acc.result, False, held)


def sketch(
    chunks: Iterable[np.ndarray],
    dtype: np.dtype,
    bins: int = 40,
    cancelled: Callable[[], bool] | None = None,
    numel: int | None = None,
) -> tuple[tuple[TensorStats, np.ndarray, np.ndarray, bool], Sketch | None]:
    """``summarize``'s answer for ``bins`` and the ``Sketch`` that gives any other number of bins without a
    second pass (None for a tensor held in one chunk: reading it again costs a few milliseconds)."""
    bins = max(1, int(bins))
    dtype = np.dtype(dtype)
    if (dtype.itemsize <= 2 and dtype.kind in "biuf") or dtype == _BF16:
        bits = np.dtype(f"u{dtype.itemsize}")
        counts = np.zeros(1 << (8 * dtype.itemsize), dtype=np.int64)
        for chunk in chunks:
            if cancelled is not None and cancelled():
                raise Cancelled
            codes = chunk.view(bits)
            for start in range(0, codes.size, BLOCK):
                counts += np.bincount(codes[start : start + BLOCK], minlength=counts.size)
        sk = _value_sketch(_decode(dtype), counts)
        return sk.summary(bins), sk
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return (*_exact(np.empty(0, dtype=dtype), bins), True), None
    if numel is not None and numel > first.size:
        pending = [first]  # more chunks follow: no exact one-chunk answer to keep it for
    else:
        first = first.copy()  # the reader reuses its buffer for the next chunk
        second = next(it, None)
        if second is None:
            return (*_exact(first, bins), True), None
        pending = [first, second]
    acc = _Summary()
    while pending:
        for chunk in pending:
            acc.chunk(_as_float(chunk))
        if cancelled is not None and cancelled():
            raise Cancelled
        nxt = next(it, None)
        pending = [] if nxt is None else [nxt]
    sk = _grid_sketch(acc)
    return sk.summary(bins), sk


def summarize(
    chunks: Iterable[np.ndarray],
    dtype: np.dtype,
    bins: int = 40,
    cancelled: Callable[[], bool] | None = None,
    numel: int | None = None,
) -> tuple[TensorStats, np.ndarray, np.ndarray, bool]:
    """``(stats, counts, edges, exact)`` of a tensor given as flat chunks of ``dtype``, reading them once.

    ``exact`` says the edges are ``numpy.histogram``'s over [min, max] (always, except for 4- and 8-byte
    values spread over several chunks, see the module docstring). ``cancelled`` is polled between chunks;
    when it returns True the pass stops with ``Cancelled``. ``numel``, when known, spares holding a copy of
    the first chunk in case it is the only one.
    """
    return sketch(chunks, dtype, bins, cancelled, numel)[0]


def compute_stats(chunks: Iterable[np.ndarray], dtype: np.dtype | None = None) -> TensorStats:
    """Stats over a tensor given as a stream of flat chunks (one pass)."""
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return summarize([], dtype or np.dtype(np.float64), 1)[0]
    return summarize(itertools.chain([first], it), dtype or first.dtype, 1)[0]


def compute_histogram(
    chunks: Iterable[np.ndarray], bins: int, value_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges over finite values in ``value_range``, the same bins as ``numpy.histogram``."""
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo > hi:
        raise ValueError(f"histogram range must have min <= max, got {value_range}")
    edges = hist_edges(float(lo), float(hi), max(1, int(bins)))
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for chunk in chunks:
        with np.errstate(all="ignore"):
            x = _as_float(chunk).astype(np.float64)
            finite = np.isfinite(x)
        x = x if finite.all() else x[finite]
        for start in range(0, x.size, BLOCK):
            counts += bin_counts(x[start : start + BLOCK], edges)
    return counts, edges
