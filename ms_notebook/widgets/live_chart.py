"""LiveChart: training curves that the browser draws while the kernel only ships the numbers.

Why a custom view and not a matplotlib image per update: rendering a two-panel PNG costs the kernel 70–250 ms
of CPU per frame, several percent of a short fine-tuning run; drawing SVG in the browser costs the kernel
nothing. Each update sends the whole current run as two float32 buffers (step, loss) plus the epoch records,
so a lost or late message never leaves a gap, and the widget state saved with a notebook holds the full
curves. The view follows JupyterLab's theme (light and dark) through its CSS variables.

Python -> view (synced traitlets)
  ``label``        the current run's name; ``live`` whether it is still running
  ``steps``/``loss`` float32 little-endian bytes, one value per training step (NaN: no loss recorded)
  ``epochs``       epoch records ``{"epoch", "step", <metric>: float, ...}`` (eval_accuracy, train_loss, ...)
  ``overlays``     earlier runs ``{"label", "steps", "loss", "epochs"}`` (lists), drawn dashed
  ``status``       the run's state ("running", "stopping", "stopped", "finished", "failed"; "" before)
  ``progress``     one line of progress ("epoch 2/5 · step 40/100 · 14 steps/s · ETA 4 s"); ``fraction`` 0–1
  ``stoppable``    show a Stop button (a standalone loop's chart; a Dashboard has its own); ``notice``: a
                   sentence the run wants said (a non-finite loss)
  ``standalone``   a chart of its own (your loop's): it has the run line (progress, Stop); one inside a
                   Dashboard or a job's view has not, they show progress and Stop themselves
  ``interrupt_kernel`` this kernel's id while a loop runs in the foreground cell (``steps()``), else ""
view -> Python
  a ``{"event": "stop"}`` message when Stop is pressed (``LiveCurves.stop()``); with ``interrupt_kernel``
  also the Jupyter server's interrupt for that kernel, which ``steps()`` turns into a Stop (a busy kernel
  reads comm messages only after the cell)
view <-> Python
  ``smoothing``    EMA factor in [0, 0.95] for the step loss (bias-corrected); ``log_y``: log loss axis.
                   The view's slider and checkbox set them; ``LiveCurves`` observes them for its final PNG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ms_notebook.runs.history import History

_STATIC = Path(__file__).parent / "static"


def _float32(values: list[float]) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def _json_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def epoch_payload(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch records with only finite numbers (JSON has no NaN; strings are not curves)."""
    out = []
    for record in epochs:
        clean = {key: _json_number(value) for key, value in record.items()}
        out.append({key: value for key, value in clean.items() if value is not None})
    return out


def run_payload(history: History) -> dict[str, Any]:
    """A finished run as plain JSON lists, for ``overlays``."""
    steps, losses, epochs = history.series()
    return {
        "label": history.label,
        "steps": steps,
        "loss": [value if math.isfinite(value) else None for value in losses],
        "epochs": epoch_payload(epochs),
    }


class LiveChart(anywidget.AnyWidget):
    """Loss per step and epoch metrics of one run (plus overlays), drawn as SVG by the browser."""

    _esm = _STATIC / "live_chart.js"
    _css = _STATIC / "live_chart.css"

    label = traitlets.Unicode("run").tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)
    steps = traitlets.Bytes(b"").tag(sync=True)
    loss = traitlets.Bytes(b"").tag(sync=True)
    epochs = traitlets.List([]).tag(sync=True)
    overlays = traitlets.List([]).tag(sync=True)
    smoothing = traitlets.Float(0.6).tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    progress = traitlets.Unicode("").tag(sync=True)
    fraction = traitlets.Float(0.0).tag(sync=True)
    stoppable = traitlets.Bool(False).tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    interrupt_kernel = traitlets.Unicode("").tag(sync=True)
    standalone = traitlets.Bool(True).tag(sync=True)

    @traitlets.validate("smoothing")
    def _valid_smoothing(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value < 1.0:
            raise traitlets.TraitError(f"smoothing must be in [0, 1), got {value}")
        return value

    def show_run(self, history: History, live: bool | None = None) -> None:
        """Send ``history`` as the current run (one comm message)."""
        steps, losses, epochs = history.series()
        with self.hold_sync():
            self.label = history.label
            self.steps = _float32(steps)
            self.loss = _float32(losses)
            self.epochs = epoch_payload(epochs)  # unchanged lists compare equal and are not resent
            if live is not None:
                self.live = live

    def show_overlays(self, overlays: list[History]) -> None:
        self.overlays = [run_payload(run) for run in overlays]

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """The step and loss columns as the view received them (float32)."""
        return np.frombuffer(self.steps, dtype="<f4"), np.frombuffer(self.loss, dtype="<f4")
