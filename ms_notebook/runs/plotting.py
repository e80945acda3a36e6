"""Matplotlib reader of a run history: loss and metric panels rendered to PNG bytes.

Uses matplotlib's object API with the Agg canvas (no pyplot), so it can draw from any thread and never
touches the notebook's current figure.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .history import History

_NON_METRIC = {"epoch", "step", "loss", "lr", "steps_per_s", "wall_time", "train_loss", "eval_loss"}


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Exponential moving average with bias correction (no drag towards 0 at the start)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out, avg, n = [], 0.0, 0
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(float("nan"))
            continue
        n += 1
        avg = smoothing * avg + (1.0 - smoothing) * value
        out.append(avg / (1.0 - smoothing**n))
    return out


def render_png(
    history: History,
    overlays: Sequence[History] = (),
    smoothing: float = 0.6,
    log_y: bool = False,
    size: tuple[float, float] = (9.0, 3.2),
    dpi: int = 80,
) -> bytes:
    """Draw the loss panel (per-step, smoothed) and the metric panel (per-epoch) for the run and overlays."""
    # fixed margins: a constrained layout would double the cost of every redraw
    figure = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(figure)
    ax_loss, ax_metric = figure.subplots(1, 2)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.22)
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    any_metric = False
    runs = [*overlays, history]
    for index, run in enumerate(runs):
        color = colors[index % len(colors)]
        current = run is history
        rows, epochs, _ = run.snapshot()
        label = run.label
        steps = [r["step"] for r in rows if r.get("loss") is not None]
        losses = [float(r["loss"]) for r in rows if r.get("loss") is not None]
        if losses:
            if smoothing > 0 and current:
                ax_loss.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
            ax_loss.plot(
                steps, ema(losses, smoothing) if smoothing > 0 else losses, color=color,
                linewidth=1.6 if current else 1.0, linestyle="-" if current else "--", label=f"{label} loss",
            )
        eval_loss = [(e["step"], e["eval_loss"]) for e in epochs if e.get("eval_loss") is not None]
        if eval_loss:
            xs, ys = zip(*eval_loss, strict=True)
            ax_loss.plot(xs, ys, "o:", color=color, markersize=4, label=f"{label} eval loss")
        names = sorted({k for e in epochs for k, v in e.items()
                        if k not in _NON_METRIC and isinstance(v, float)})
        for m_index, name in enumerate(names):
            points = [(e["step"], e[name]) for e in epochs if e.get(name) is not None]
            if not points:
                continue
            any_metric = True
            xs, ys = zip(*points, strict=True)
            marker = "osd^v<>"[m_index % 7]
            ax_metric.plot(xs, ys, marker=marker, color=color, linestyle="-" if current else "--",
                           markersize=4, label=f"{label} {name}")
    ax_loss.set_title("loss" + (f" (EMA {smoothing:g})" if smoothing > 0 else ""))
    ax_loss.set_xlabel("step")
    if log_y:
        ax_loss.set_yscale("log")
    ax_metric.set_title("epoch metrics")
    ax_metric.set_xlabel("step")
    for axis in (ax_loss, ax_metric):
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="upper right")
    if not any_metric:
        ax_metric.text(0.5, 0.5, "no epoch metrics yet", ha="center", va="center",
                       transform=ax_metric.transAxes, color="gray")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def summary(history: History) -> dict[str, Any]:
    """Latest values for tables and titles."""
    return history.latest()
