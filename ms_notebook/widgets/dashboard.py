"""Dashboard: buttons, device choice, progress and live curves for a ``Runner``.

The widget only presents and delegates: every action calls a ``Runner`` method, every value shown comes from
the runner's state or its curves' history. Updates arrive through the runner's listener on the training thread
and are throttled by time, so the dashboard costs nothing per step.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import ipywidgets as w

from ms_notebook.runs.runner import EVALUATING, IDLE, STOPPING, TRAINING, Runner
from ms_notebook.widgets import frontend

TAG_EVAL, TAG_FINETUNE = "ms-eval", "ms-finetune"


def format_seconds(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s' or '–' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def progress_text(progress: dict[str, Any], state: str) -> str:
    """One line: state, epoch, step of total, speed and ETA."""
    step, total = progress.get("step", 0), progress.get("total", 0)
    if not total:
        return {IDLE: "ready", EVALUATING: "evaluating…"}.get(state, state)
    parts = [f"epoch {progress.get('epoch', 0)}/{progress.get('epochs', 0)}", f"step {step}/{total}"]
    if progress.get("steps_per_s"):
        parts.append(f"{progress['steps_per_s']:.1f} steps/s")
    if state in (TRAINING, STOPPING):
        parts.append(f"ETA {format_seconds(progress.get('eta_s'))}")
    names = {TRAINING: "training", STOPPING: "stopping", EVALUATING: "evaluating", IDLE: "done"}
    prefix = names.get(state, state)
    if state == IDLE and step < total:
        prefix = "stopped"
    return f"{prefix} · " + " · ".join(parts)


def metrics_rows(runner: Runner) -> list[tuple[str, str]]:
    """(name, value) rows: last epoch's metrics, last evaluation, latest step loss."""
    rows: list[tuple[str, str]] = []
    latest = runner.curves.history_obj.latest()
    for name in ("epoch", "step", "loss", "train_loss", "lr"):
        value = latest.get(name)
        if value is not None:
            rows.append((name, _fmt(value)))
    for name in sorted(k for k in latest if k.startswith("eval_")):
        rows.append((name, _fmt(latest[name])))
    if runner.last_eval:
        for name, value in sorted(runner.last_eval.items()):
            rows.append((f"evaluate: {name}", _fmt(value)))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[tuple[str, str]]) -> str:
    if not rows:
        return "<i>no metrics yet</i>"
    body = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<table class='ms-dashboard-metrics'>{body}</table>"


class Dashboard(w.VBox):
    """Evaluate / Fine-tune / Stop a ``Runner`` from buttons; device, epochs, learning rate, live curves."""

    def __init__(self, runner: Runner, epochs: int = 1, max_updates_per_s: float = 5.0) -> None:
        self.runner = runner
        self._min_interval = 1.0 / max_updates_per_s
        self._last_update = 0.0
        self._note = ""
        devices = runner.devices()
        self.device = w.Dropdown(options=list(devices.available), value=devices.current, description="device")
        self.epochs = w.BoundedIntText(value=epochs, min=1, max=10_000, description="epochs")
        lr = runner.learning_rate()
        shown_lr = float(f"{lr:.6g}") if lr is not None else 0.0  # not float32 noise like 0.0199999
        self.lr = w.FloatText(value=shown_lr, description="learning rate", disabled=lr is None, step=None)
        self.evaluate_button = w.Button(description="Evaluate", icon="check", tooltip="Evaluate on eval data")
        self.fit_button = w.Button(description="Fine-tune", icon="play", button_style="primary")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.status = w.Label(value="ready")
        self.status.add_class("ms-dashboard-status")
        self.metrics = w.HTML(value=_table([]))
        self.error = w.HTML(value="")
        runner.curves.view.enabled = True
        runner.curves.view.embedded = True
        self.curves = runner.curves.view.widget()  # the live chart, with its own smoothing and log controls

        # With the JupyterLab extension, a notebook's cells tagged ms-eval / ms-finetune run instead, so the
        # tutorial's code stays visible while the buttons drive it; without it the widget runs them itself.
        frontend.probe()
        self.evaluate_button.on_click(lambda _: self._act(self._evaluate))
        self.fit_button.on_click(lambda _: self._act(self._start_fit))
        self.stop_button.on_click(lambda _: self._act(self.runner.stop))
        self.device.observe(self._on_device, names="value")
        runner.add_listener(self._on_event)

        settings = w.HBox([self.device, self.epochs, self.lr])
        buttons = w.HBox([self.evaluate_button, self.fit_button, self.stop_button])
        progress = w.HBox([self.progress, self.status])
        self.curves.layout.flex = "1 1 auto"
        body = w.HBox([self.metrics, self.curves])
        super().__init__([settings, buttons, progress, self.error, body])
        self.add_class("ms-dashboard")
        self.refresh()

    # -- intents -------------------------------------------------------------------------------------
    def _act(self, action) -> None:
        self.error.value = ""
        try:
            action()
        except Exception as error:  # shown inside the widget; the kernel carries on
            self._show_error(f"{type(error).__name__}: {error}")
        self.refresh()

    def _run_tagged(self, tag: str) -> bool:
        """Ask the front end to run the notebook's cells tagged ``tag``; False when there are none to run."""
        if frontend.tags().get(tag) and frontend.request_run_tagged(tag):
            self._note = f"running the cells tagged {tag}"
            return True
        return False

    def _evaluate(self) -> None:
        if not self._run_tagged(TAG_EVAL):
            self.runner.start_evaluate()

    def _start_fit(self) -> None:
        current = self.runner.learning_rate()
        if self.lr.value and not self.lr.disabled and float(f"{current:.6g}") != self.lr.value:
            self.runner.set_learning_rate(float(self.lr.value))
        if not self._run_tagged(TAG_FINETUNE):
            self.runner.start_fit(int(self.epochs.value))

    def _on_device(self, change: dict[str, Any]) -> None:
        try:
            self.runner.select_device(change["new"])
            self.error.value = ""
        except Exception as error:
            self._show_error(str(error))
            self.device.unobserve(self._on_device, names="value")
            self.device.value = change["old"]
            self.device.observe(self._on_device, names="value")

    def _show_error(self, text: str) -> None:
        self.error.value = (f"<pre class='ms-dashboard-error' style='color:var(--jp-error-color1,#c00);"
                            f"white-space:pre-wrap;max-height:12em;overflow:auto'>{html.escape(text)}</pre>")

    # -- updates -------------------------------------------------------------------------------------
    def _on_event(self, event: str, runner: Runner) -> None:
        self._note = ""
        if event == "step":
            now = time.monotonic()
            if now - self._last_update < self._min_interval:
                return
            self._last_update = now
            self.refresh(progress_only=True)
            return
        if event == "error":
            self._show_error(runner.error_text or str(runner.error))
        self.refresh()

    def refresh(self, progress_only: bool = False) -> None:
        """Copy the runner's state into the widgets."""
        runner = self.runner
        progress = runner.progress()
        self.progress.value = min(max(progress["fraction"], 0.0), 1.0)
        self.status.value = progress_text(progress, runner.state)
        if self._note and runner.state == IDLE:  # a tagged cell was asked to run and has not started yet
            self.status.value = self._note
        if progress_only:
            return
        actions = runner.actions()
        self.evaluate_button.disabled = not actions["evaluate"]
        self.fit_button.disabled = not actions["fit"]
        self.stop_button.disabled = not actions["stop"]
        self.device.disabled = not actions["device"]
        self.epochs.disabled = runner.running
        self.lr.disabled = runner.running or runner.learning_rate() is None
        self.progress.bar_style = {"stopping": "warning"}.get(runner.state, "danger" if runner.error else "")
        self.metrics.value = _table(metrics_rows(runner))
