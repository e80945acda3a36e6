"""Matplotlib reader of a run history: loss and metric panels rendered to PNG bytes.

Uses matplotlib's object API with the Agg canvas (no pyplot), so it can draw from any thread and never
touches the notebook's current figure.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator
from PIL import Image

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


CSS_WIDTH = 720  # px the figure is shown at; it is drawn at DENSITY times that many pixels
DENSITY = 2
_LEGEND_ROW_IN = 0.27  # height of one legend row above the panels, in inches
# points: at 80 CSS px per inch, 9.9 pt is 11 CSS px, the smallest text the figure shows
TICK_PT, LABEL_PT, TITLE_PT = 9.9, 10.5, 11.0
_COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
_MARKERS = "osd^v<>"


def log_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values for a log axis over [lo, hi] (values, lo > 0): powers of ten, else 1-3, 1-2-5 or
    1..9 times 10^k, else round linear values; never 10^0.5 = 3.162. The live chart uses the same rule."""
    a, b = math.log10(lo), math.log10(hi)
    within = [k for k in range(math.ceil(a - 1e-9), math.floor(b + 1e-9) + 1)]
    if len(within) > count:
        stride = math.ceil(len(within) / count)
        return [10.0**k for k in within if k % stride == 0]
    best = [10.0**k for k in within]
    if len(best) >= min(3, count):
        return best
    for mantissas in ((1, 3), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0**k for k in range(math.floor(a) - 1, math.ceil(b) + 1) for m in mantissas
                 if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)]
        if len(ticks) > count + 1:
            break
        if len(ticks) > len(best):
            best = ticks
        if len(best) >= min(3, count):
            return best
    linear = MaxNLocator(count, steps=[1, 2, 5, 10]).tick_values(lo, hi)
    linear = [float(t) for t in linear if lo <= t <= hi and t > 0]
    return linear if len(linear) > len(best) else best


class _Canvas:
    """One reusable figure: a legend row band on top, the loss panel and, optionally, the epoch panel.

    Reusing it is what keeps the final figure of every run cheap: tick objects, the renderer and its text
    metrics survive between renders. Margins are fixed (automatic layout measures every label, ~4x slower);
    only the band for the legend, which sits above the panels and never over the data, changes height.
    """

    def __init__(self, size: tuple[float, float], dpi: int, metric_panel: bool, legend_rows: int) -> None:
        width, height = size
        self.figure = Figure(figsize=(width, height + legend_rows * _LEGEND_ROW_IN), dpi=dpi)
        FigureCanvasAgg(self.figure)
        total = height + legend_rows * _LEGEND_ROW_IN
        top = 1 - (0.38 + legend_rows * _LEGEND_ROW_IN) / total  # the legend band, then the panel titles
        bottom = 0.64 / total
        if metric_panel:
            self.loss, self.metric = self.figure.subplots(1, 2)
            self.figure.subplots_adjust(left=0.085, right=0.985, bottom=bottom, top=top, wspace=0.22)
        else:
            self.loss, self.metric = self.figure.subplots(1, 1), None
            self.figure.subplots_adjust(left=0.085, right=0.985, bottom=bottom, top=top)
        self.legend_top = 1 - 0.04 / total
        self.axes = [axis for axis in (self.loss, self.metric) if axis is not None]
        for axis in self.axes:
            axis.grid(True, alpha=0.3)
            axis.tick_params(labelsize=TICK_PT)
            self._locate(axis)
        self.loss.set_xlabel("step (one batch)", fontsize=LABEL_PT)
        self.loss.set_ylabel("loss", fontsize=LABEL_PT)
        if self.metric is not None:
            self.metric.set_title("epoch metrics", y=1.0, pad=4, fontsize=TITLE_PT)  # fixed: no measuring
            self.metric.set_xlabel("epoch", fontsize=LABEL_PT)

    @staticmethod
    def _locate(axis: Any) -> None:
        axis.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        if axis.get_yscale() == "linear":
            axis.yaxis.set_major_locator(MaxNLocator(5))

    def clear(self, log_y: bool) -> None:
        """Remove the previous run's artists; keep axes, ticks and renderer."""
        for axis in self.axes:
            for artist in [*axis.lines, *axis.texts]:
                artist.remove()
        for legend in list(self.figure.legends):
            legend.remove()
        scale = "log" if log_y else "linear"
        if self.loss.get_yscale() != scale:
            self.loss.set_yscale(scale)  # this resets the locators
            self._locate(self.loss)

    def finish(self, handles: list[Any], ncol: int) -> None:
        """Scale the axes to the data, set round log ticks, place the legend and draw."""
        for axis in self.axes:
            if axis.lines:
                axis.relim()
                axis.autoscale(True)
            else:
                axis.set_xlim(0, 1)
                axis.set_ylim(*((0.1, 1) if axis.get_yscale() == "log" else (0, 1)))
        if self.loss.get_yscale() == "log" and self.loss.lines:
            lo, hi = self.loss.get_ylim()
            ticks = log_ticks(lo, hi)
            self.loss.yaxis.set_major_locator(FixedLocator(ticks))
            self.loss.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            self.loss.yaxis.set_minor_locator(NullLocator())
        if handles:
            self.figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, self.legend_top),
                               ncol=ncol, fontsize=TICK_PT, frameon=False, handlelength=2.4,
                               columnspacing=1.6)
        self.figure.canvas.draw()

    def png(self) -> bytes:
        """The drawn figure as PNG bytes."""
        canvas = self.figure.canvas
        width, height = canvas.get_width_height(physical=True)
        # straight from Agg's buffer (no NumPy copy of a strided RGB view: that alone took ~20 ms at 2x)
        image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        return palette_png(image)


def palette_png(image: Image.Image) -> bytes:
    """PNG bytes of a figure with at most 256 colours (a fast octree palette, no dithering): a line plot has
    few colours, so it looks the same at a third of the size of RGB (a 1440 px figure: 30 KB, not 96 KB) in
    about the same time (~12 ms). Saved notebooks carry every figure twice (output and static copy)."""
    buffer = io.BytesIO()
    rgb = image.convert("RGB")
    rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        buffer, format="png", compress_level=6
    )
    return buffer.getvalue()


def compact_png(png: bytes) -> bytes:
    """``palette_png`` of PNG bytes from elsewhere (``savefig``); the input when that is already smaller."""
    with Image.open(io.BytesIO(png)) as image:
        small = palette_png(image)
    return small if len(small) < len(png) else png


_canvases: dict[tuple[tuple[float, float], int, bool, int], _Canvas] = {}
_canvas_lock = threading.Lock()


def _legend_handles(
    runs: Sequence[History], history: History, names: list[str], eval_loss: bool
) -> list[Any]:
    """One entry per run (solid: this run, dashed: earlier ones), eval loss, the marker of each metric."""
    handles = [
        Line2D([], [], color=_COLORS[i % len(_COLORS)], linewidth=1.8 if run is history else 1.1,
               linestyle="-" if run is history else "--",
               label=run.label if run is history else f"{run.label} (earlier)")
        for i, run in enumerate(runs)
    ]
    if eval_loss:
        handles.append(Line2D([], [], color="0.35", marker="o", linestyle=":", markersize=4,
                              label="eval loss (per epoch)"))
    for m_index, name in enumerate(names):
        handles.append(Line2D([], [], color="0.35", marker=_MARKERS[m_index % 7], linestyle="",
                              markersize=4, label=name.replace("_", " ")))
    return handles


def render_png(
    history: History,
    overlays: Sequence[History] = (),
    smoothing: float = 0.6,
    log_y: bool = False,
    size: tuple[float, float] = (9.0, 3.2),
    dpi: int = CSS_WIDTH // 9,
    density: int = DENSITY,
) -> bytes:
    """The figure of :func:`draw` as PNG bytes (thread-safe)."""
    with _canvas_lock:
        return _draw(history, overlays, smoothing, log_y, size, dpi, density).png()


def draw(
    history: History,
    overlays: Sequence[History] = (),
    smoothing: float = 0.6,
    log_y: bool = False,
    size: tuple[float, float] = (9.0, 3.2),
    dpi: int = CSS_WIDTH // 9,
    density: int = DENSITY,
) -> Figure:
    """Draw the runs and return the matplotlib Figure (reused by the next call: read it, do not keep it)."""
    with _canvas_lock:
        return _draw(history, overlays, smoothing, log_y, size, dpi, density).figure


def _draw(
    history: History,
    overlays: Sequence[History],
    smoothing: float,
    log_y: bool,
    size: tuple[float, float],
    dpi: int,
    density: int,
) -> _Canvas:
    """Draw the loss panel (per step, smoothed) and, when there are any, the epoch-metric panel, as PNG bytes.

    The image is ``size`` inches at ``dpi`` CSS pixels per inch (720 px wide by default), drawn at
    ``density`` times the pixels so that it is sharp on high-density screens and projectors; show it at
    ``CSS_WIDTH``. The legend sits above the panels (never over the data); axes say "step (one batch)",
    "epoch", "loss" and the metric. It runs at the end of every training run, so it is kept cheap: one reused
    figure per layout, fixed margins and title positions, at most six ticks per axis, and the pixels handed
    straight to the PNG encoder at low compression. Call with ``_canvas_lock`` held.
    """
    runs = [*overlays, history]
    series = [run.snapshot() for run in runs]
    names = sorted({k for _, epochs, _ in series for e in epochs for k, v in e.items()
                    if k not in _NON_METRIC and isinstance(v, float)})
    eval_loss = any(e.get("eval_loss") is not None for _, epochs, _ in series for e in epochs)
    handles = _legend_handles(runs, history, names, eval_loss)
    longest = max((len(h.get_label()) for h in handles), default=1)
    column_pt = longest * 0.55 * TICK_PT + 4 * TICK_PT  # text (about 0.55 em a character), handle, spacing
    ncol = max(1, min(len(handles), int(size[0] * 72 // column_pt)))
    rows = math.ceil(len(handles) / ncol) if handles else 0
    key = (tuple(size), int(dpi * density), bool(names), rows)
    canvas = _canvases.get(key)
    if canvas is None:
        canvas = _canvases[key] = _Canvas(size, int(dpi * density), bool(names), rows)
    canvas.clear(log_y)
    ax_loss, ax_metric = canvas.loss, canvas.metric
    for index, (run, (rows_, epochs, _)) in enumerate(zip(runs, series, strict=True)):
        color = _COLORS[index % len(_COLORS)]
        current = run is history
        steps = [r["step"] for r in rows_ if r.get("loss") is not None]
        losses = [float(r["loss"]) for r in rows_ if r.get("loss") is not None]
        if losses:
            if smoothing > 0 and current:
                ax_loss.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
            ax_loss.plot(
                steps, ema(losses, smoothing) if smoothing > 0 else losses, color=color,
                linewidth=1.6 if current else 1.0, linestyle="-" if current else "--",
            )
        points = [(e["step"], e["eval_loss"]) for e in epochs if e.get("eval_loss") is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax_loss.plot(xs, ys, "o:", color=color, markersize=4)
        for m_index, name in enumerate(names):
            points = [(e["epoch"], e[name]) for e in epochs
                      if e.get(name) is not None and e.get("epoch") is not None]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax_metric.plot(xs, ys, marker=_MARKERS[m_index % 7], color=color,
                           linestyle="-" if current else "--", markersize=4)
    if ax_metric is not None:
        ax_metric.set_ylabel(names[0].replace("_", " ") if len(names) == 1 else "metric", fontsize=LABEL_PT)
    title = "loss per step" + (f" (EMA {smoothing:g})" if smoothing > 0 else "")
    ax_loss.set_title(title, y=1.0, pad=4, fontsize=TITLE_PT)
    if not ax_loss.lines:
        ax_loss.text(0.5, 0.5, "no steps yet", ha="center", va="center", transform=ax_loss.transAxes,
                     color="gray")
    canvas.finish(handles, ncol)
    return canvas


def summary(history: History) -> dict[str, Any]:
    """Latest values for tables and titles."""
    return history.latest()
