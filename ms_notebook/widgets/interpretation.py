"""InterpretationView: what a class looks at after Evaluate — the confusion matrix, per-class accuracy and the
samples the network gets most wrong (images with their true and predicted classes for image data).

Presents an ``Interpretation`` (``ms_notebook.runs.interpret``): every number comes from its DataFrames. The
display bundle carries a static text/html of the same tables (and the top-loss PNG), so a saved or exported
notebook shows them without a kernel.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ms_notebook.widgets.static import StaticRendering, png_html


def confusion_html(interpretation: Any) -> str:
    """The confusion matrix as an HTML table, cells shaded by their share of the true class's samples."""
    frame = interpretation.confusion()
    names = [str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for true, counts in zip(frame.index, frame.to_numpy(), strict=True):
        total = max(int(counts.sum()), 1)
        cells = []
        for j, count in enumerate(counts):
            share = count / total
            color = "46,125,50" if str(frame.columns[j]) == str(true) else "198,40,40"
            style = f"background:rgba({color},{0.08 + 0.7 * share:.2f})" if count else ""
            cells.append(f"<td style='{style};text-align:right'>{int(count)}</td>")
        rows.append(f"<tr><th>{html.escape(str(true))}</th>{''.join(cells)}</tr>")
    return ("<table class='ms-confusion'><thead><tr><th>true \\ predicted</th>" + head
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _frame_html(css_class: str, frame: Any, columns: list[str], formats: dict[str, str],
                headings: dict[str, str] | None = None) -> str:
    """``frame``'s ``columns`` as an HTML table; ``formats`` name the number columns (right-aligned)."""
    head = "".join(f"<th>{html.escape((headings or {}).get(c, c))}</th>" for c in columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = [
            f"<td style='text-align:right'>{record[c]:{formats[c]}}</td>" if c in formats
            else f"<td>{html.escape(str(record[c]))}</td>"
            for c in columns
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class='{css_class}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def per_class_html(interpretation: Any) -> str:
    return _frame_html("ms-per-class", interpretation.per_class(),
                       ["class", "samples", "accuracy", "most confused with"],
                       {"samples": "d", "accuracy": ".0%"})


def top_losses_html(interpretation: Any, k: int = 9) -> str:
    return _frame_html("ms-top-losses", interpretation.top_losses(k),
                       ["index", "true", "predicted", "loss", "p(true)"], {"loss": ".3g", "p(true)": ".2f"},
                       headings={"index": "sample"})


_STYLE = (
    "<style>.ms-interpretation table{border-collapse:collapse;font-size:var(--jp-ui-font-size1,12px);"
    "margin:4px 16px 8px 0}.ms-interpretation th,.ms-interpretation td{padding:2px 6px;"
    "border-bottom:1px solid var(--jp-border-color2,#ddd)}.ms-interpretation .ms-tables{display:flex;"
    "flex-wrap:wrap;align-items:flex-start}</style>"
)


class InterpretationView(StaticRendering, W.VBox):
    """Confusion matrix, per-class accuracy and top losses of an ``Interpretation``."""

    def __init__(self, interpretation: Any = None, top_k: int = 9) -> None:
        self.interpretation: Any = None
        self.top_k = top_k
        self.tables = W.HTML()
        self.images = W.Image(format="png", layout=W.Layout(max_width="100%", display="none"))
        super().__init__([self.tables, self.images])
        self.add_class("ms-interpretation-view")
        self.layout.display = "none"
        if interpretation is not None:
            self.show(interpretation)

    def _tables_html(self) -> str:
        it = self.interpretation
        images = it.is_image()
        top = "" if images else f"<div><b>Top losses</b>{top_losses_html(it, self.top_k)}</div>"
        return (
            f"<div class='ms-interpretation'>{_STYLE}"
            f"<p><b>Interpretation</b>: {html.escape(it.summary())}</p>"
            f"<div class='ms-tables'><div><b>Confusion matrix</b>{confusion_html(it)}</div>"
            f"<div><b>Per class</b>{per_class_html(it)}</div>{top}</div>"
            + ("<p><b>Top losses</b> (true / predicted class, loss)</p>" if images else "")
            + "</div>"
        )

    def show(self, interpretation: Any) -> None:
        """Present ``interpretation``."""
        self.interpretation = interpretation
        self.tables.value = self._tables_html()
        png = interpretation.top_losses_png(self.top_k)
        self.images.value = png or b""
        self.images.layout.width = f"{interpretation.png_width(self.top_k)}px"
        self.images.layout.display = "" if png else "none"
        self.layout.display = ""
        self.refresh_static()

    def static_html(self) -> str:
        """The tables and the top-loss images as one HTML block (for a notebook without a kernel)."""
        if self.interpretation is None:
            return "<p>Interpretation: not run yet.</p>"
        png = self.interpretation.top_losses_png(self.top_k)
        width = self.interpretation.png_width(self.top_k)
        return self._tables_html() + (png_html(png, width, "top losses") if png else "")
