"""OverTimeView: a series' pictures in the browser ("Over time"): change heat maps, a tensor's histogram over
steps, alpha per layer. Presents and delegates: the figures come from ``checkpoint.series_plot``; the view
keeps a PNG and puts the same PNG in its static copy (1024 CSS pixels wide at most, 700 high)."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ms_notebook.checkpoint.series import CheckpointSeries
from ms_notebook.checkpoint.series_plot import figure_png, plot_series
from ms_notebook.widgets.static import MUTED, StaticRendering, png_css_width, png_html

KINDS = {
    "Change per tensor": ("change", {"by": "tensor"}),
    "Change per block": ("change", {"by": "block"}),
    "Selected tensor's histogram": ("histogram", {}),
    "Alpha per layer": ("alpha", {}),
}


class OverTimeView(StaticRendering, W.VBox):
    """Pick a picture; ``select(name)`` sets the tensor the histogram shows (the browser calls it)."""

    def __init__(self, series: CheckpointSeries, name: str | None = None) -> None:
        self.series = series
        self.name = name
        self.png: bytes | None = None
        self.kind = W.Dropdown(options=list(KINDS), value="Change per block", description="Over time:",
                               layout=W.Layout(width="340px"))  # fmt: skip
        self.caption = W.HTML("")
        self.image = W.Image(format="png", layout=W.Layout(max_width="1024px", width="100%", height="auto"))
        self.kind.observe(lambda _ch: self.redraw(), "value")
        super().__init__([self.kind, self.caption, self.image])
        self.add_class("ms-over-time")
        self.redraw()

    def select(self, name: str) -> None:
        """Show ``name``'s histogram over steps when that picture is chosen (remembered otherwise)."""
        self.name = name
        if KINDS[self.kind.value][0] == "histogram":
            self.redraw()

    def redraw(self) -> None:
        kind, kwargs = KINDS[self.kind.value]
        first, last = self.series.steps[0], self.series.steps[-1]
        text = f"{len(self.series)} checkpoints, steps {first}–{last}"
        if kind == "histogram" and not self.name:
            self.png = None
            self.image.value = b""
            self.caption.value = f"<span style='{MUTED}'>{text}: select a tensor to see its histogram.</span>"
            return
        try:
            fig = plot_series(self.series, kind, self.name if kind == "histogram" else None, **kwargs)
            self.png = figure_png(fig)
        except (KeyError, ValueError) as error:
            self.png = None
            self.image.value = b""
            self.caption.value = f"<span style='{MUTED}'>{html.escape(str(error))}</span>"
            return
        self.image.value = self.png
        self.caption.value = f"<span style='{MUTED}'>{text}</span>"
        self.mark_static_stale()

    def static_html(self) -> str:
        if not self.png:
            return self.caption.value
        return self.caption.value + png_html(self.png, min(1024, png_css_width(self.png)), self.kind.value)

    def static_png(self) -> bytes | None:
        return self.png

    def static_text(self) -> str:
        return f"OverTimeView of {len(self.series)} checkpoints"


def over_time_section(view: Any) -> str:
    """The view's copy as a titled block of the browser's static copy."""
    from ms_notebook.widgets.static import section

    return section("Over time", view.static_html())
