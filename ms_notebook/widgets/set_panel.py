"""What the browser adds for a checkpoint set: a header line with the set's notes, where a tensor's slices
live, and a Merge control that runs ``CheckpointSet.merge`` (MindSpore's own tools) with a progress bar.

Plain HTML functions (tested without widgets) and one small widget that only presents and delegates.
"""

from __future__ import annotations

import html
import os
import threading
import time
from typing import Any

import ipywidgets as W

from ms_notebook.checkpoint.sets import CheckpointSet
from ms_notebook.checkpoint.sets.checkpoint_set import KINDS

MAX_SLICE_ROWS = 16


def set_header_html(ck: Any) -> str:
    """The set's kind, file count and notes; empty for a single file."""
    if not isinstance(ck, CheckpointSet):
        return ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ck.notes)
    return (
        '<div class="ms-set-header" style="font-family:var(--jp-ui-font-family);'
        'font-size:var(--jp-ui-font-size0);color:var(--jp-ui-font-color2);line-height:1.5">'
        f"<b>{html.escape(KINDS.get(ck.kind, ck.kind))}</b> · {len(ck.files):,} files"
        f'<ul style="margin:2px 0 2px 16px;padding:0">{notes}</ul></div>'
    )


def slices_html(ck: Any, name: str) -> str:
    """Which ranks (or shard) hold which box of ``name``; empty for a single file."""
    if not isinstance(ck, CheckpointSet) or name not in ck:
        return ""
    parts = ck.slices(name)
    rows = "".join(
        f"<li><code>{html.escape(s.describe(ck.root))}</code></li>" for s in parts[:MAX_SLICE_ROWS]
    )
    more = f"<li>… {len(parts) - MAX_SLICE_ROWS} more</li>" if len(parts) > MAX_SLICE_ROWS else ""
    follows = ck.inferred_from(name)
    note = (
        f"<div>not in the strategy: follows the layout of <code>{html.escape(follows)}</code></div>"
        if follows
        else ""
    )
    what = "stored whole" if len(parts) == 1 else f"assembled from {len(parts)} slices"
    return (
        '<div class="ms-details ms-set-slices" style="margin-top:6px">'
        f'<div class="ms-details-meta">{what}:</div>'
        f'<ul style="margin:2px 0 2px 16px;padding:0">{rows}{more}</ul>{note}</div>'
    )


def _formats(ck: CheckpointSet) -> list[str]:
    out = ["ckpt", "safetensors"]
    if ck.kind == "ranks" and ck.format == "safetensors":
        out.append("unified")
    return out


class MergeControl(W.HBox):
    """Destination, format and a Merge button; the merge runs in a thread and reports progress here."""

    def __init__(self, ck: CheckpointSet) -> None:
        self.checkpoint = ck
        root = ck.root.rstrip(os.sep)  # the set's folder: the merged file goes beside it, not into it
        stem, folder = os.path.basename(root) or "checkpoint", os.path.dirname(root)
        self.format = W.Dropdown(options=_formats(ck), value=ck.format, layout=W.Layout(width="120px"))
        self.destination = W.Text(
            value=os.path.join(folder, f"{stem}-merged.{ck.format}"), layout=W.Layout(width="360px")
        )
        self.button = W.Button(
            description="Merge",
            tooltip="Write the set as one checkpoint with MindSpore's own tools",
            layout=W.Layout(width="auto"),
        )
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="120px"))
        self.status = W.HTML("")
        self.result: Any = None
        self._thread: threading.Thread | None = None
        self._last = 0.0
        self.format.observe(self._on_format, "value")
        self.button.on_click(lambda _b: self.start())
        super().__init__(
            [
                W.HTML("Merge into&nbsp;"),
                self.destination,
                self.format,
                self.button,
                self.progress,
                self.status,
            ],
            layout=W.Layout(align_items="center", flex_flow="row wrap"),
        )

    def _on_format(self, change: dict[str, Any]) -> None:
        base, ext = os.path.splitext(self.destination.value)
        if ext in (".ckpt", ".safetensors", ""):
            suffix = "" if change["new"] == "unified" else f".{change['new']}"
            self.destination.value = base + suffix

    def _report(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 0.2:  # redraw at most every 0.2 s
            return
        self._last = now
        self.progress.value = fraction
        self.status.value = html.escape(message)

    def run(self) -> Any:
        """Merge now (in the calling thread); the result, or None with the error shown."""
        self.button.disabled = True
        self.progress.bar_style = ""
        try:
            from ms_notebook.transfer.merge import merge

            self.result = merge(
                self.checkpoint, self.destination.value, format=self.format.value, progress=self._report
            )
        except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
            self.progress.bar_style = "danger"
            self.status.value = f'<span style="color:var(--jp-error-color1)">{html.escape(str(exc))}</span>'
            self.result = None
        else:
            self.progress.value = 1.0
            self.progress.bar_style = "success"
            self.status.value = f"wrote {html.escape(self.destination.value)}"
        finally:
            self.button.disabled = False
        return self.result

    def start(self) -> None:
        """Merge in a background thread so the kernel stays responsive (the button's action)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self.run, name="ms-notebook-merge", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for a merge started by the button; its result."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result
