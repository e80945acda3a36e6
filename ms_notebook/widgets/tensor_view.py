"""Details of one tensor for the browser: statistics (NaN/Inf in red), a histogram, a value preview, a heat
map.

Plain functions returning HTML strings (tested without widgets). Statistics and histogram come from
``Checkpoint.describe`` (one pass over the tensor, cached in the checkpoint layer and shared with the
Checkpoint Viewer's server), the preview reads only the values it shows, and the histogram is a small SVG
built as text (no plotting library on a click). Only the opt-in heat map reads the whole tensor and draws
with matplotlib's object API (no pyplot, so nothing leaks into the notebook's inline output).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

PREVIEW_ELEMENTS = 24
HEATMAP_MAX_CELLS = 256  # per side, after striding
HEATMAP_MAX_KERNELS = 16  # per side of the conv kernel mosaic
HEATMAP_MAX_BYTES = 256 << 20  # the heat map reads the whole tensor: not for bigger ones
HIST_BINS = 40  # the Viewer's default too, so both views share one cached summary

_LABELS = {
    "mean": "mean",
    "std": "std",
    "min": "min",
    "max": "max",
    "abs_mean": "mean |x|",
    "mean_abs": "mean |x|",
    "zero_fraction": "zeros",
    "zeros": "zeros",
    "nan_count": "NaN",
    "nan": "NaN",
    "nans": "NaN",
    "inf_count": "Inf",
    "inf": "Inf",
    "infs": "Inf",
}


def stats_dict(stats: Any) -> dict[str, Any]:
    """Whatever ``Checkpoint.stats`` returns (dataclass, named tuple, mapping, object) as a plain dict."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    if hasattr(stats, "_asdict"):
        return dict(stats._asdict())
    if isinstance(stats, Mapping):
        return dict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def histogram_arrays(hist: Any) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) from whatever ``Checkpoint.histogram`` returns."""
    if isinstance(hist, tuple) and len(hist) == 2:
        counts, edges = hist
    elif isinstance(hist, Mapping):
        counts, edges = hist["counts"], hist.get("edges", hist.get("bin_edges"))
    else:
        counts, edges = hist.counts, getattr(hist, "edges", getattr(hist, "bin_edges", None))
    return np.asarray(counts), np.asarray(edges)


def is_bad(key: str, value: Any) -> bool:
    """NaN/Inf counts above zero (and non-finite summary values) are flagged in red."""
    low = key.lower()
    if ("nan" in low or "inf" in low) and isinstance(value, int | float | np.number):
        return bool(value > 0)
    return isinstance(value, float) and not np.isfinite(value)


def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def stats_table(stats: Mapping[str, Any]) -> str:
    rows = []
    for key, value in stats.items():
        cls = ' class="ms-bad"' if is_bad(key, value) else ""
        label = html.escape(_LABELS.get(key, key.replace("_", " ")))
        rows.append(f"<tr{cls}><th>{label}</th><td>{html.escape(_fmt(value))}</td></tr>")
    return f'<table class="ms-stats">{"".join(rows)}</table>'


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def histogram_png(counts: np.ndarray, edges: np.ndarray, title: str = "") -> str:
    """Base64 PNG of a histogram already computed (matplotlib; for figures saved outside the browser)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.2))
    ax = fig.add_subplot()
    if len(edges) == len(counts) + 1 and len(counts):
        ax.stairs(counts, edges, fill=True, color="#1976d2", alpha=0.85)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.set_ylabel("count", fontsize=8)
    return _png(fig)


def _tick(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "—"


def histogram_svg(counts: np.ndarray, edges: np.ndarray, width: int = 420, height: int = 170) -> str:
    """A histogram as a small standalone SVG document: bars, a count axis (0 and the largest bin) and the
    value range under it. Text, not a rendered figure: it costs well under a millisecond and scales with
    its pane."""
    counts = np.asarray(counts, dtype=np.int64)
    left, right, top, bottom = 44, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = int(counts.max()) if counts.size else 0
    bars = []
    n = max(1, counts.size)
    for i, c in enumerate(counts.tolist()):
        if c <= 0:
            continue
        h = max(1.0, plot_h * c / peak)
        x = left + plot_w * i / n
        bars.append(
            f'<rect x="{x:.2f}" y="{top + plot_h - h:.2f}" width="{max(plot_w / n - 0.6, 0.6):.2f}" '
            f'height="{h:.2f}"/>'
        )
    lo = float(edges[0]) if len(edges) else float("nan")
    hi = float(edges[-1]) if len(edges) else float("nan")
    axis = "#8a8a8a"
    text = f'font-family="sans-serif" font-size="11" fill="{axis}"'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f'<g fill="#1976d2">{"".join(bars)}</g>'
        f'<path d="M{left - 0.5},{top} V{top + plot_h + 0.5} H{width - right}" stroke="{axis}" fill="none"/>'
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end" {text}>{peak:,}</text>'
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" {text}>0</text>'
        f'<text x="{left - 4}" y="{top + plot_h / 2 + 4:.1f}" text-anchor="end" {text}>count</text>'
        f'<text x="{left}" y="{height - 6}" {text}>{html.escape(_tick(lo))}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end" {text}>{html.escape(_tick(hi))}</text>'
        "</svg>"
    )


def histogram_img(counts: np.ndarray, edges: np.ndarray) -> str:
    """The histogram as an ``<img class="ms-hist">`` holding the SVG (standalone: safe in any output)."""
    data = base64.b64encode(histogram_svg(counts, edges).encode()).decode("ascii")
    return f'<img class="ms-hist" alt="histogram" src="data:image/svg+xml;base64,{data}"/>'


def heatmap_array(values: np.ndarray) -> np.ndarray | None:
    """A 2-D picture of a matrix (strided to ≤256×256) or a conv kernel mosaic (out × in tiles), else None."""
    a = np.asarray(values)
    if a.ndim == 2:
        sr = max(1, -(-a.shape[0] // HEATMAP_MAX_CELLS))
        sc = max(1, -(-a.shape[1] // HEATMAP_MAX_CELLS))
        return np.asarray(a[::sr, ::sc], dtype=np.float64)
    if a.ndim == 4:
        o, i, kh, kw = a.shape
        o, i = min(o, HEATMAP_MAX_KERNELS), min(i, HEATMAP_MAX_KERNELS)
        tiles = np.asarray(a[:o, :i], dtype=np.float64)
        mosaic = np.full((o * (kh + 1) - 1, i * (kw + 1) - 1), np.nan)
        for r in range(o):
            for c in range(i):
                mosaic[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = tiles[r, c]
        return mosaic
    return None


def heatmap_png(picture: np.ndarray, title: str = "") -> str:
    from matplotlib.figure import Figure

    finite = picture[np.isfinite(picture)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    fig = Figure(figsize=(4.2, 3.2))
    ax = fig.add_subplot()
    im = ax.imshow(
        picture, cmap="RdBu_r", vmin=-lim or -1, vmax=lim or 1, interpolation="nearest", aspect="auto"
    )
    fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return _png(fig)


def preview_text(values: Any, total: int | None = None) -> str:
    """The first few values, flattened, as text; ``total`` (when only a preview was read) says how many
    follow."""
    if isinstance(values, str):
        return repr(values[:200])
    a = np.asarray(values)
    flat = a.reshape(-1)[:PREVIEW_ELEMENTS]
    with np.errstate(all="ignore"):
        body = np.array2string(np.asarray(flat), precision=4, separator=", ", max_line_width=44)
    size = a.size if total is None else total
    more = f" … ({size - flat.size:,} more)" if size > flat.size else ""
    return body + more


def _summary(checkpoint: Any, name: str, bins: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Statistics and histogram: ``describe`` (one cached pass) when the checkpoint has it."""
    describe = getattr(checkpoint, "describe", None)
    if describe is not None:
        s = describe(name, bins)
        return stats_dict(s.stats), s.counts, s.edges
    counts, edges = histogram_arrays(checkpoint.histogram(name, bins=bins))
    return stats_dict(checkpoint.stats(name)), counts, edges


def _heatmap(checkpoint: Any, name: str, info: Any) -> str:
    if len(info.shape) not in (2, 4):
        return '<div class="ms-note">Heat map: only for matrices and conv kernels.</div>'
    if int(info.nbytes) > HEATMAP_MAX_BYTES:
        return '<div class="ms-note">Heat map: the tensor is too large to draw whole.</div>'
    values = checkpoint[name]
    picture = heatmap_array(values)
    if picture is None:
        return '<div class="ms-note">Heat map: only for matrices and conv kernels.</div>'
    title = "kernels (out × in)" if np.ndim(values) == 4 else "matrix"
    png = heatmap_png(picture, title)
    return f'<img class="ms-heatmap" alt="heat map" src="data:image/png;base64,{png}"/>'


def details_html(checkpoint: Any, name: str, *, heatmap: bool = False, bins: int = HIST_BINS) -> str:
    """The details pane for tensor ``name`` of ``checkpoint`` (an index ``Checkpoint``).

    Reads one pass for statistics and histogram (none when cached) and the first values for the preview.
    """
    try:
        info = checkpoint.info(name)
    except KeyError:
        return f'<div class="ms-details"><b>{html.escape(name)}</b></div>'
    shape = "×".join(map(str, info.shape)) or "scalar"
    head = (
        f'<div class="ms-details-title">{html.escape(name)}</div>'
        f'<div class="ms-details-meta">{shape} · {html.escape(str(info.dtype))} · {info.numel:,} values'
        f" · {html.escape(str(getattr(info, 'group', '')))}</div>"
    )
    parts = [head]
    try:
        if str(info.dtype) == "str":
            parts.append(f"<pre>{html.escape(preview_text(checkpoint[name]))}</pre>")
            return '<div class="ms-details">' + "".join(parts) + "</div>"
        stats, counts, edges = _summary(checkpoint, name, bins)
        parts.append(stats_table(stats))
        if info.numel > 0 and int(np.sum(counts)) > 0:
            parts.append(histogram_img(counts, edges))
        preview = getattr(checkpoint, "preview", None)
        values = preview(name, PREVIEW_ELEMENTS) if preview is not None else checkpoint[name]
        parts.append(f'<pre class="ms-preview">{html.escape(preview_text(values, int(info.numel)))}</pre>')
        if heatmap:
            parts.append(_heatmap(checkpoint, name, info))
    except Exception as exc:  # a value the index cannot read (maptensor, damaged bytes): say so, browse on
        parts.append(f'<div class="ms-bad">Cannot read values: {html.escape(str(exc))}</div>')
    return '<div class="ms-details">' + "".join(parts) + "</div>"


DETAILS_CSS = """
<style>
.ms-details { font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); color:
var(--jp-ui-font-color1);
  padding: 4px 8px; line-height: 1.45; }
.ms-details-title { font-weight: 600; font-family: var(--jp-code-font-family); word-break: break-all; }
.ms-details-meta, .ms-note { color: var(--jp-ui-font-color2); margin: 2px 0 6px; }
.ms-stats { border-collapse: collapse; margin-bottom: 6px; }
.ms-stats th, .ms-stats td { line-height: 1.35; }
.ms-stats th { text-align: left; font-weight: normal; color: var(--jp-ui-font-color2); padding: 1px 12px 1px
0; } .ms-stats td { font-family: var(--jp-code-font-family); text-align: right; padding: 1px 0; }
.ms-bad, .ms-bad th, .ms-bad td { color: var(--jp-error-color1, #d32f2f) !important; font-weight: 600; }
.ms-hist, .ms-heatmap { max-width: 100%; display: block; margin: 4px 0; border-radius: 2px; }
.ms-hist { width: 100%; max-width: 560px; height: auto; }
.ms-preview { font-size: var(--jp-code-font-size); white-space: pre; overflow-x: auto; color:
var(--jp-ui-font-color1);
  background: var(--jp-layout-color2); padding: 4px; border-radius: 2px; }
</style>
"""
