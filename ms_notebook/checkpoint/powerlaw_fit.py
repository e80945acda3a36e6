"""A power-law fit of an eigenvalue spectrum's tail, as WeightWatcher fits it (its default ``"ww"`` method).

For each candidate lower cut-off ``xmin`` (every eigenvalue but the largest), the exponent is the maximum
likelihood estimate of a continuous power law above it (Clauset, Shalizi & Newman 2009):
``alpha = 1 + n / Σ log(x_i / xmin)``, and the fit's Kolmogorov–Smirnov distance ``D`` is the largest gap
between the empirical CDF of the ``n`` values ``≥ xmin`` and ``1 − (x / xmin)^(1 − alpha)``. The answer is the
cut-off with the smallest ``D`` (a fit with ``alpha ≤ 1`` gets ``D = 1``). No upper cut-off.

Written here rather than imported because WeightWatcher's module prints to stdout and pulls in scikit-learn,
matplotlib and powerlaw on import; the figures agree with its ``pl_fit`` (tests/test_diagnostics.py). The
``powerlaw`` package's own ``Fit`` uses another estimator and gives other values (2.8 against 7.5 on a
Gaussian 400×800 matrix). The work is O(n²) in the number of eigenvalues, done in blocks of bounded size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_EVALS = (
    20  # below this many positive eigenvalues the tail is too short to fit (WeightWatcher's small-N cut)
)
_BLOCK = 1 << 20  # elements of the (cut-offs × eigenvalues) work arrays at a time


@dataclass(frozen=True, slots=True)
class PowerLawFit:
    """``alpha`` and the cut-off ``xmin`` with the smallest KS distance ``D``; ``sigma`` is alpha's standard
    error (alpha − 1)/√n; ``n_tail`` eigenvalues lie at or above ``xmin``."""

    alpha: float
    xmin: float
    D: float
    sigma: float
    n_tail: int


def fit_power_law(evals: np.ndarray) -> PowerLawFit | None:
    """Fit the tail of ``evals`` (any order; values ≤ 0 dropped); None if fewer than ``MIN_EVALS`` remain."""
    x = np.sort(np.asarray(evals, dtype=np.float64).reshape(-1))
    x = x[(x > 0) & np.isfinite(x)]
    n = x.size
    if n < MIN_EVALS:
        return None
    logs = np.log(x)
    # suffix sums of log x: S_i = Σ_{j ≥ i} log x_j
    suffix = np.cumsum(logs[::-1])[::-1]
    cand = np.arange(n - 1)
    counts = (n - cand).astype(np.float64)
    with np.errstate(all="ignore"):
        alphas = 1.0 + counts / (suffix[:-1] - counts * logs[:-1])
    ds = np.ones(n - 1)
    rows = max(1, _BLOCK // n)
    for start in range(0, n - 1, rows):
        idx = cand[start : start + rows]
        a = alphas[idx]
        ok = a > 1
        if not ok.any():
            continue
        idx, a = idx[ok], a[ok]
        j = np.arange(n)
        # ratio x_j / x_i for j ≥ i (lower triangle masked out)
        with np.errstate(all="ignore"):
            logratio = logs[None, :] - logs[idx, None]
            theory = 1.0 - np.exp(logratio * (1.0 - a[:, None]))
            empirical = (j[None, :] - idx[:, None]) / (n - idx)[:, None]
            gap = np.abs(theory - empirical)
        gap[j[None, :] < idx[:, None]] = 0.0
        ds[idx] = gap.max(axis=1)
    best = int(np.argmin(ds))
    alpha = float(alphas[best])
    tail = n - best
    return PowerLawFit(alpha, float(x[best]), float(ds[best]), (alpha - 1.0) / math.sqrt(tail), tail)
