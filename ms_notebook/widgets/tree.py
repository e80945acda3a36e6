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
  ``columns``    [{key, label, kind}], kind ``text`` | ``number`` (right-aligned) | ``check`` (checkbox).
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

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ms_notebook.widgets.tree_model import Column, TreeModel

_STATIC = Path(__file__).parent / "static"


class TreeView(anywidget.AnyWidget):
    """Virtualised tree table over a :class:`TreeModel`; see the module docstring for the message contract."""

    _esm = _STATIC / "tree.js"
    _css = _STATIC / "tree.css"

    rows = traitlets.List([]).tag(sync=True)
    columns = traitlets.List([]).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    filter_text = traitlets.Unicode("").tag(sync=True)
    filter_error = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("Filter: text, glob (*.weight) or /regex/").tag(sync=True)
    height = traitlets.Int(420).tag(sync=True)
    render_ms = traitlets.Float(0.0).tag(sync=True)  # set by the view: first render to first frame, in ms

    def __init__(self, model: TreeModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self._check_callbacks: list[Callable[[str, str, list[str]], None]] = []
        self.on_msg(self._on_view_msg)
        self.refresh()

    # ---- Python API used by owners ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute visible rows from the model and push them (one sync for all traits)."""
        counts = self.model.counts()
        with self.hold_sync():
            self.columns = [c.to_dict() for c in self.model.columns]
            self.rows = self.model.rows()
            self.selected = self.model.selected
            self.filter_text = self.model.filter_text
            self.filter_error = self.model.filter_error
            self.summary = f"{counts['visible']:,} of {counts['total']:,} tensors"

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
