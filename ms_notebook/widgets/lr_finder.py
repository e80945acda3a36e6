"""LRFinderView: the learning-rate finder's curve, its suggestion and a button to use it.

Presents an ``LRFinderResult`` (``ms_notebook.runs.lr_finder``); the figure is the result's own PNG. Like
every widget here it carries a static copy (summary and PNG, ``widgets.static``), so a saved notebook shows it
without a kernel.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ms_notebook.widgets.static import StaticRendering, png_css_width, png_html


class LRFinderView(StaticRendering, W.VBox):
    """The finder's plot and summary; ``on_use(callback)`` is called with the suggestion on "Use it"."""

    def __init__(self, result: Any = None) -> None:
        self.result: Any = None
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", width="720px"))
        self.text = W.HTML()
        self.use_button = W.Button(description="Use suggestion", icon="check", disabled=True,
                                   tooltip="Set the learning rate to the suggested one")
        self.use_button.layout = W.Layout(width="auto")
        self._callbacks: list[Callable[[float], None]] = []
        self.use_button.on_click(lambda _b: self._use())
        super().__init__([W.HBox([self.text, self.use_button], layout=W.Layout(align_items="center")),
                          self.image])
        self.add_class("ms-lr-finder")
        self.layout.display = "none"
        if result is not None:
            self.show(result)

    def show(self, result: Any) -> None:
        """Draw ``result`` (an LRFinderResult)."""
        self.result = result
        self.image.value = result.figure_png()
        self.text.value = (f"<span class='ms-lr-finder-summary' style='font-family:var(--jp-ui-font-family)'>"
                           f"<b>Learning-rate finder</b>: {html.escape(result.summary())}</span>")
        self.use_button.disabled = result.suggestion is None
        self.layout.display = ""
        self.refresh_static()

    def on_use(self, callback: Callable[[float], None]) -> None:
        self._callbacks.append(callback)

    def _use(self) -> None:
        if self.result is not None and self.result.suggestion is not None:
            for callback in self._callbacks:
                callback(float(self.result.suggestion))

    def static_html(self) -> str:
        """What a notebook without a kernel shows: the summary and the figure."""
        if self.result is None:
            return "<p>Learning-rate finder: not run yet.</p>"
        png = self.static_png()
        figure = png_html(png, png_css_width(png) or 720, "learning-rate finder") if png else ""
        return f"<div class='ms-lr-finder'><p>{html.escape(self.result.summary())}</p>{figure}</div>"

    def static_png(self) -> bytes | None:
        return self.result.figure_png() if self.result is not None else None
