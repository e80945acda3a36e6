"""Matplotlib pictures of a series, for the notebook and its saved copy (no widgets here).

- ``change``: rows (tensors, or blocks when there are more than ``MAX_ROWS`` tensors) × checkpoints, colour
  the relative change from the previous checkpoint on a log scale; NaN (not finite) cells in red.
- ``histogram``: one tensor's distribution over steps, bins × checkpoints, log counts (as TensorBoard's
  distributions).
- ``alpha``: per-layer power-law ``alpha`` over steps (rows × checkpoints), outside the healthy 2–6 in
  the ends of a diverging colour map.

Every figure is 10.24 × 7 inches at 100 dpi: it fits 1024×700 pixels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .series import CheckpointSeries

SIZE = (10.24, 7.0)
DPI = 100
MAX_ROWS = 60


NO_VALUE = "#e6e6e6"  # the background a cell without a value shows


def _figure() -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor(NO_VALUE)
    return fig, ax


def _mark(ax: Any, cells: np.ndarray, label: str) -> None:
    """Red squares on ``cells`` (a boolean rows × checkpoints grid), with a legend above the plot."""
    ys, xs = np.nonzero(cells)
    if xs.size:
        ax.scatter(xs, ys, marker="s", s=12, color="#d32f2f", label=label)
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _ticks(ax: Any, steps: list[int], rows: list[str]) -> None:
    every = max(1, math.ceil(len(steps) / 16))
    ax.set_xticks(range(0, len(steps), every), [str(s) for s in steps[::every]], fontsize=8)
    size = 8 if len(rows) <= 30 else 6
    label_every = max(1, math.ceil(len(rows) / MAX_ROWS))  # at most MAX_ROWS labels stay readable in 700 px
    ax.set_yticks(range(0, len(rows), label_every), rows[::label_every], fontsize=size)
    ax.set_xlabel("step")


def _grid(table: Any, row_key: str, value: str, steps: list[int]) -> tuple[list[str], np.ndarray]:
    rows = list(dict.fromkeys(table[row_key]))
    if not rows:
        raise ValueError("nothing to draw: the series holds no weights of that kind")
    col = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(rows), len(steps)), np.nan)
    where = {r: i for i, r in enumerate(rows)}
    for r, s, v in zip(table[row_key], table["step"], table[value], strict=True):
        grid[where[r], col[s]] = v
    return rows, grid


def plot_change(series: CheckpointSeries, by: str | None = None) -> Figure:
    """Heat map of the relative change from the previous checkpoint, rows × checkpoints."""
    from matplotlib.colors import LogNorm

    if by is None:
        by = "tensor" if len(series.names()) <= MAX_ROWS else "block"
    table = series.change() if by == "tensor" else series.block_change()
    key = "name" if by == "tensor" else "block"
    steps = list(dict.fromkeys(series.steps))
    rows, grid = _grid(table, key, "change_prev", steps)
    fig, ax = _figure()
    positive = grid[np.isfinite(grid) & (grid > 0)]
    lo, hi = (positive.min(), positive.max()) if positive.size else (1e-6, 1.0)
    shown = np.where(np.isfinite(grid) & (grid > 0), grid, np.nan)
    image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="viridis",
                      norm=LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001)))  # fmt: skip
    bad = np.isnan(grid)
    bad[:, 0] = False  # the first checkpoint has no previous: grey, not "not finite"
    _mark(ax, bad, "not finite (or absent)")
    _ticks(ax, steps, rows)
    fig.colorbar(image, ax=ax, label="‖x − x_prev‖ / ‖x_prev‖")
    ax.set_title(f"Relative change from the previous checkpoint, per {by}", loc="left")
    return fig


def plot_histogram(series: CheckpointSeries, name: str, bins: int = 60) -> Figure:
    """One tensor's histogram over steps: value bins × checkpoints, colour log(1 + count)."""
    counts, edges, steps = series.histograms(name, bins)
    fig, ax = _figure()
    image = ax.imshow(np.log1p(counts.T), aspect="auto", origin="lower", interpolation="nearest",
                      cmap="magma", extent=(-0.5, len(steps) - 0.5, edges[0], edges[-1]))  # fmt: skip
    every = max(1, math.ceil(len(steps) / 16))
    ax.set_xticks(range(0, len(steps), every), [str(s) for s in steps[::every]], fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    ax.set_title(f"{name}: distribution over steps", loc="left")
    return fig


def plot_alpha(series: CheckpointSeries, **kwargs: Any) -> Figure:
    """Per-layer alpha over steps, rows × checkpoints; healthy 2–6 in the middle of the colour map."""
    from matplotlib.colors import TwoSlopeNorm

    table = series.diagnostics(**kwargs)
    steps = list(dict.fromkeys(series.steps))
    rows, grid = _grid(table, "name", "alpha", steps)
    fig, ax = _figure()
    finite = grid[np.isfinite(grid)]
    lo = min(1.5, float(finite.min()) if finite.size else 1.5)
    hi = max(8.0, float(finite.max()) if finite.size else 8.0)
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="RdBu_r",
                      norm=TwoSlopeNorm(vcenter=4.0, vmin=lo, vmax=hi))  # fmt: skip
    _, status = _grid(table.assign(bad=(table.status == "not finite").astype(float)), "name", "bad", steps)
    _mark(ax, status == 1.0, "not finite (grey: no fit or skipped)")
    _ticks(ax, steps, rows)
    fig.colorbar(image, ax=ax, label="alpha (2–6: well trained; > 6 random-like; < 2 over-fitted)")
    ax.set_title("Power-law alpha per layer over steps", loc="left")
    return fig


def plot_series(
    series: CheckpointSeries, kind: str = "change", name: str | None = None, **kwargs: Any
) -> Figure:
    """Dispatch ``series.plot(kind, name)``."""
    if kind == "change":
        return plot_change(series, **kwargs)
    if kind == "histogram":
        if name is None:
            raise ValueError("plot('histogram', name) needs a tensor name")
        return plot_histogram(series, name, **kwargs)
    if kind == "alpha":
        return plot_alpha(series, **kwargs)
    raise ValueError(f"kind must be 'change', 'histogram' or 'alpha', not {kind!r}")


def figure_png(fig: Figure, density: int = 2) -> bytes:
    """The figure as PNG drawn at ``density`` × its dpi (2048×1400 pixels for 2: sharp on HiDPI screens,
    shown 1024 CSS pixels wide)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi * density)
    return buffer.getvalue()
