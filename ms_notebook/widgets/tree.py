"""TreeView: a reusable, virtualised tree table for notebooks (checkpoint browser, transfer panel).

Why anywidget and not a composition of standard ipywidgets: a checkpoint of an LLM shard has 10,000+ tensors.
One ipywidget per row means one model, one comm message and several DOM nodes per row; at 10k rows that takes
seconds to render and megabytes of widget state. anywidget lets us ship one small ES module
(``static/tree.js``) inside the Python package with no build step and no CDN; it runs in JupyterLab 4,
Notebook 7 and VS Code, and it renders only the rows in the viewport (virtualised scrolling), so 10k rows
scroll smoothly.

Contract between Python and the view (all logic stays in Python, in ``tree_model.TreeModel``):

Python -> view (synced traitlets)
  ``rows``       visible rows, depth first. Each row: ``id`` (full dotted name), ``depth`` (0 = top level),
                 ``label``, ``has_children``, ``expanded``, ``values`` ({column key: display text}),
                 optional ``status`` (rendered as CSS class ``ms-status-<status>``, e.g. shape_mismatch),
                 optional ``checks`` ({check column key: true | false | "mixed"}; "mixed" = tri-state).
  ``columns``    [{key, label, kind, sample}], kind ``text`` | ``number`` (right-aligned) | ``check``;
                 ``sample``: the column's longest text so far (label or value; it never gets shorter, so
                 columns do not jump while filtering). The view makes the column exactly as wide as that
                 text in the column's font; the name column takes the rest.
  ``selected``   id of the selected row ("" for none).
  ``filter_text`` / ``filter_error`` / ``summary``: filter box text, bad-regex message, "N of M tensors".
  ``height``     maximum pixel height of the scrolling area (it shrinks to fit few rows).
  (view -> Python trait: ``render_ms``, time from render() to the first painted frame.)

view -> Python (custom messages, ``model.send``)
  ``{"type": "expand", "id": ..., "expanded": bool}``     open or close a node
  ``{"type": "select", "id": ...}``                        select a row (click, keyboard, Enter)
  ``{"type": "check", "column": ..., "id": ...}``          toggle a check column (inner row: its subtree)
  ``{"type": "filter", "text": ...}``                      filter text changed (debounced in the view)

Python applies the intent to the TreeModel and resends ``rows``. Owners of a TreeView (browser, transfer
panel) observe ``selected`` and register ``on_check(callback)`` to react.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ms_notebook.checkpoint.filters import FILTER_HINT
from ms_notebook.widgets.static import StaticRendering
from ms_notebook.widgets.tree_model import Column, TreeModel

_STATIC = Path(__file__).parent / "static"


STATIC_MAX_ROWS = 60  # rows of a static copy; the rest is counted
# left-bar colour of a row status in static copies (the live view's CSS classes ms-status-*); plain colours,
# because JupyterLab's sanitizer drops inline styles that use CSS variables
_STATUS_COLOR = {
    "matched": "#388e3c",
    "reload": "#388e3c",
    "missing": "#f57c00",
    "new": "#f57c00",
    "dtype_converted": "#f57c00",
    "unexpected": "#0097a7",
    "frozen": "#0097a7",
    "under_trained": "#f57c00",
    "over_trained": "#8e24aa",
    "not_finite": "#d32f2f",
}
_CHECK_TEXT = {True: "✓", False: "", "mixed": "◐"}


def column_widths(
    rows: list[dict[str, Any]], columns: Iterable[Column], known: Mapping[str, str]
) -> dict[str, str]:
    """The longest text of each column (its label or a value in ``rows``), never shorter than ``known``.

    The view sizes each column to this text in the column's own font, so nothing is cut and nothing is
    wider than it needs to be; the name column takes the rest.
    """
    longest = dict(known)
    for column in columns:
        best = longest.get(column.key, "")
        candidates = [column.label]
        if column.kind != "check":
            candidates += [str(text) for row in rows
                           if (text := (row.get("values") or {}).get(column.key)) is not None]
        for text in candidates:
            if len(text) > len(best):
                best = text
        longest[column.key] = best
    return longest


_ALIGN = {"text": "left", "number": "right", "check": "center"}


def rows_html(
    rows: list[dict[str, Any]], columns: list[dict[str, Any]], max_rows: int = STATIC_MAX_ROWS
) -> str:
    """The visible rows as a plain HTML table (the tree's static copy): indented names, values, ticks."""
    head = "".join(
        f'<th style="text-align:{_ALIGN.get(c["kind"], "left")}">{html.escape(c["label"])}</th>'
        for c in columns
    )
    body = []
    for row in rows[:max_rows]:
        twisty = ("▾ " if row.get("expanded") else "▸ ") if row.get("has_children") else ""
        indent = "\u00a0\u00a0\u00a0" * int(row.get("depth", 0))
        color = _STATUS_COLOR.get(row.get("status") or "", "#d32f2f")
        bar = f"border-left:3px solid {color};" if row.get("status") else ""
        weight = "font-weight:600;" if row.get("has_children") else ""
        cells = [
            f'<td style="{bar}{weight}text-align:left;white-space:nowrap" title="{html.escape(row["id"])}">'
            f"{indent}{twisty}{html.escape(str(row.get('label', '')))}</td>"
        ]
        for c in columns:
            if c["kind"] == "check":
                mark = _CHECK_TEXT.get((row.get("checks") or {}).get(c["key"], False), "")
                cells.append(f'<td style="text-align:center">{mark}</td>')
            else:
                text = (row.get("values") or {}).get(c["key"], "")
                align = _ALIGN.get(c["kind"], "left")
                cells.append(
                    f'<td style="text-align:{align};white-space:nowrap">{html.escape(str(text))}</td>'
                )
        body.append(f'<tr class="ms-static-row" data-id="{html.escape(row["id"])}">{"".join(cells)}</tr>')
    more = ""
    if len(rows) > max_rows:
        more = (
            f'<div style="color:var(--jp-ui-font-color2,#616161)">… and {len(rows) - max_rows:,} more rows '
            "(open the notebook with its kernel to browse them)</div>"
        )
    return (
        '<table class="ms-static-tree" style="border-collapse:collapse;font-size:90%">'
        f'<thead><tr><th style="text-align:left">Name</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )


class TreeView(StaticRendering, anywidget.AnyWidget):
    """Virtualised tree table over a :class:`TreeModel`; see the module docstring for the message contract."""

    _esm = _STATIC / "tree.js"
    _css = _STATIC / "tree.css"

    rows = traitlets.List([]).tag(sync=True)
    columns = traitlets.List([]).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    filter_text = traitlets.Unicode("").tag(sync=True)
    filter_error = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode(FILTER_HINT).tag(sync=True)
    height = traitlets.Int(420).tag(sync=True)
    render_ms = traitlets.Float(0.0).tag(sync=True)  # set by the view: first render to first frame, in ms

    def __init__(self, model: TreeModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self._longest: dict[str, str] = {}
        self._check_callbacks: list[Callable[[str, str, list[str]], None]] = []
        self.on_msg(self._on_view_msg)
        self.refresh()

    # ---- Python API used by owners ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute visible rows from the model and push them (one sync for all traits)."""
        counts = self.model.counts()
        rows = self.model.rows()
        self._longest = column_widths(rows, self.model.columns, self._longest)
        with self.hold_sync():
            self.columns = [{**c.to_dict(), "sample": self._longest[c.key]} for c in self.model.columns]
            self.rows = rows
            self.selected = self.model.selected
            self.filter_text = self.model.filter_text
            self.filter_error = self.model.filter_error
            self.summary = f"{counts['visible']:,} of {counts['total']:,} tensors"

    def static_html(self) -> str:
        """The summary line and the visible rows as a table."""
        summary = f'<div style="color:var(--jp-ui-font-color2,#616161)">{html.escape(self.summary)}</div>'
        return summary + rows_html(list(self.rows), list(self.columns))

    def reserve_width(self, column: str, text: str) -> None:
        """Make ``column`` at least as wide as ``text`` now (a value that may appear later)."""
        if len(text) > len(self._longest.get(column, "")):
            self._longest[column] = text
        self.refresh()

    def on_check(self, callback: Callable[[str, str, list[str]], None]) -> None:
        """Call ``callback(column, row_id, changed_leaf_ids)`` after a check toggle from the view."""
        self._check_callbacks.append(callback)

    def add_columns(self, columns: Iterable[Column]) -> None:
        self.model.add_columns(columns)
        self.refresh()

    def set_statuses(self, statuses: Mapping[str, str], only: Iterable[str] | None = None) -> None:
        self.model.set_statuses(statuses, only)
        self.refresh()

    def set_group_visible(self, group: str, visible: bool) -> None:
        self.model.set_group_visible(group, visible)
        self.refresh()

    def set_filter(self, text: str) -> None:
        self.model.set_filter(text)
        self.refresh()

    def set_expanded(self, node_id: str, expanded: bool = True) -> None:
        self.model.set_expanded(node_id, expanded)
        self.refresh()

    def select(self, node_id: str) -> None:
        self.model.select(node_id)
        self.selected = self.model.selected

    # ---- intents from the view ----
    def handle_intent(self, msg: Mapping[str, Any]) -> None:
        """Apply one intent (the dicts the view sends); public so tests drive the widget model."""
        kind = msg.get("type")
        if kind == "expand":
            self.set_expanded(str(msg.get("id", "")), bool(msg.get("expanded", True)))
        elif kind == "select":
            self.select(str(msg.get("id", "")))
        elif kind == "filter":
            self.set_filter(str(msg.get("text", "")))
        elif kind == "check":
            column, row_id = str(msg.get("column", "")), str(msg.get("id", ""))
            changed = self.model.toggle_check(column, row_id)
            self.refresh()
            for cb in self._check_callbacks:
                cb(column, row_id, changed)

    def _on_view_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict):
            self.handle_intent(content)
