"""The live view of a ``LiveCurves`` run in the notebook: a ``LiveChart`` while it runs, one static PNG after.

Provided to ``runs/curves.py`` by name from the top package (``ms_notebook/__init__.py`` through
``runs/hooks.py``), so the runs layer never imports the widgets layer.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ms_notebook.runs.plotting import CSS_WIDTH, render_png
from ms_notebook.runs.progress import progress_line

PNG_METADATA = {"image/png": {"width": CSS_WIDTH}}  # drawn at 2x: shown at its CSS size, sharp


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


@functools.cache
def _kernel_id() -> str:
    """This kernel's id (its connection file's name), or "" outside a kernel; fixed per process."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:
        return ""
    match = re.fullmatch(r"kernel-([0-9A-Za-z-]+)\.json", name)
    return match.group(1) if match else ""


class CurveView:
    """Shows a LiveCurves history in the notebook: live while the run goes on, a static PNG when it ends.

    While training, a ``LiveChart`` (SVG drawn by the browser) receives the numbers from the training
    thread at most ``max_updates_per_s`` times a second, and never for more than ~1 % of the time; the
    kernel does no rasterising then. When the run ends the live view is replaced in place by one matplotlib
    PNG, so a saved or exported notebook shows the curves without a kernel. Embedded in a Dashboard, the
    chart simply stays.
    """

    def __init__(self, curves: Any, max_updates_per_s: float, display: bool | None) -> None:
        self.curves = curves
        self.min_interval = 1.0 / max_updates_per_s if max_updates_per_s > 0 else math.inf
        self.enabled = _in_kernel() if display is None else display
        self.embedded = False  # True when another widget (the Dashboard) shows the chart
        self.chart = None
        self.handle = None  # the live chart's display in the running cell
        self.final_handle = None  # where the last static figure went (redrawn there on a style change)
        self._lock = threading.Lock()
        self._last_push = -math.inf
        self._gap = self.min_interval
        self.last_png: bytes | None = None
        self.push_count = 0
        self.draw_count = 0

    def widget(self):
        """The live chart (a ``LiveChart`` anywidget), created on first use."""
        if self.chart is None:
            from .live_chart import LiveChart

            chart = LiveChart(smoothing=self.curves.smoothing, log_y=self.curves.log_y,
                              standalone=not self.embedded)
            chart.show_overlays(self.curves.overlays)
            chart.show_run(self.curves.history_obj)
            chart.observe(self._on_style, names=["smoothing", "log_y"])
            chart.on_msg(self._on_message)
            self.chart = chart
        return self.chart

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "stop":
            self.curves.stop()

    def _status(self, chart: Any) -> None:
        """Run state, progress line and whether Stop is offered, onto the chart (with the next push)."""
        curves = self.curves
        chart.standalone = not self.embedded
        chart.status = curves.state or ""
        shown = curves.state and not self.embedded  # an embedding widget shows progress itself
        progress = curves.progress_obj.snapshot()
        chart.progress = progress_line(progress) if shown else ""
        chart.fraction = float(progress.get("fraction") or 0.0)
        chart.stoppable = bool(curves.stop_button and not self.embedded and curves._training)
        chart.notice = curves.notice or ""
        # A loop running in the foreground cell keeps the kernel busy: comm messages (the button's own) wait
        # until the cell ends. Its Stop then asks the server to interrupt this kernel, which steps() turns
        # into a Stop at the next step boundary; the id is offered only while such a loop runs.
        chart.interrupt_kernel = _kernel_id() if curves._foreground_steps and curves._training else ""

    def _on_style(self, change: dict[str, Any]) -> None:
        setattr(self.curves, change["name"], change["new"])
        self.restyle_final()

    def show(self) -> None:
        """Display the live chart in the current cell (once per run), under a display id for replacement."""
        if not self.enabled or self.embedded or self.handle is not None or not _in_kernel():
            return
        from IPython.display import display

        bundle = {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.widget().model_id,
            },
            "text/plain": "LiveCurves (live view; the final figure replaces it when the run ends)",
        }
        self.handle = display(bundle, raw=True, display_id=str(uuid.uuid4()))

    def update(self, force: bool = False) -> None:
        """Send the history to the chart (called on the training thread after each record), throttled."""
        chart = self.chart
        if chart is None:
            return
        if self.embedded and not force:  # the embedding widget pushes steps together with its own status
            return
        if not force and time.monotonic() - self._last_push < self._gap:
            return
        with self._lock:
            started = time.perf_counter()
            with chart.hold_sync():
                self._status(chart)
                chart.show_run(self.curves.history_obj)
            cost = time.perf_counter() - started
            self._last_push = time.monotonic()
            self._gap = max(self.min_interval, 100.0 * cost)  # pushing never takes more than ~1 % of the time
            self.push_count += 1

    def overlays_changed(self) -> None:
        if self.chart is not None:
            self.chart.show_overlays(self.curves.overlays)
            self.update(force=True)

    def start(self) -> None:
        """A run begins: show the live chart in the running cell."""
        if not self.enabled:
            return
        self.final_handle = None
        self.show()
        if self.chart is not None:
            self.chart.live = True
            self.update(force=True)

    def render(self) -> bytes:
        """Draw the static figure now (matplotlib, PNG)."""
        curves = self.curves
        self.last_png = render_png(curves.history_obj, curves.overlays, curves.smoothing, curves.log_y)
        self.draw_count += 1
        return self.last_png

    def _png_bundle(self, png: bytes) -> dict[str, str]:
        return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": "<LiveCurves figure>"}

    def finish(self) -> None:
        """The run ended: final numbers to the chart; outside a Dashboard a PNG replaces the live view."""
        if not self.enabled:
            return
        if self.chart is not None:
            self.update(force=True)
            self.chart.live = False
        if self.embedded:
            return
        png = self.render()
        if self.handle is not None:
            self.handle.update(self._png_bundle(png), raw=True, metadata=PNG_METADATA)
            self.final_handle, self.handle = self.handle, None

    def restyle_final(self) -> None:
        """Redraw the static figure in place after a smoothing or log-scale change."""
        if self.final_handle is not None and not self.curves._training:
            self.final_handle.update(self._png_bundle(self.render()), raw=True, metadata=PNG_METADATA)

    def ipython_display(self) -> None:
        """The live chart, with the static PNG beside it for front ends and exports without widgets."""
        from IPython.display import display

        curves = self.curves
        if not self.enabled:
            display(curves.history)
            return
        chart = self.widget()
        bundle = {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": chart.model_id,
            },
            "text/plain": f"<LiveCurves {curves.history_obj.label!r}: {len(curves.history_obj)} steps>",
        }
        if len(curves.history_obj) and not curves._training:
            bundle["image/png"] = base64.b64encode(self.render()).decode("ascii")
        display(bundle, raw=True, metadata=PNG_METADATA if "image/png" in bundle else None)
