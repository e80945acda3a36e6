"""Dashboard: buttons, device choice, progress and live curves for a ``Runner``.

The widget only presents and delegates: every action calls a ``Runner`` method, every value shown comes from
the runner's state or its curves' history. Updates arrive through the runner's listener on the training thread
and are throttled by time, so the dashboard costs nothing per step.
"""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w

from ms_notebook.runs.checkpoints import default_run_dir
from ms_notebook.runs.progress import format_seconds
from ms_notebook.runs.runner import EVALUATING, IDLE, STOPPING, TRAINING, Runner
from ms_notebook.widgets import frontend
from ms_notebook.widgets.interpretation import InterpretationView
from ms_notebook.widgets.lr_finder import LRFinderView
from ms_notebook.widgets.static import StaticRendering, png_html, section

TAG_EVAL, TAG_FINETUNE = "ms-eval", "ms-finetune"


def progress_text(progress: dict[str, Any], state: str) -> str:
    """One line: state, epochs, step of total, speed and ETA (from ``Runner.progress()``).

    A first run reads "training · epoch 2/10 · step 12/70 · …". A run that continues a history says which
    epochs it covers and counts steps as the history (table, chart) does: "training · epochs 36–40 ·
    epoch 38 · step 362 (12/50 this run) · …".
    """
    step, total = progress.get("step", 0), progress.get("total", 0)
    if not total:
        return {IDLE: "ready", EVALUATING: "evaluating…"}.get(state, state)
    first, last = progress.get("first_epoch", 1), progress.get("last_epoch", progress.get("epochs", 0))
    epoch = progress.get("global_epoch", progress.get("epoch", 0))
    if first <= 1:
        parts = [f"epoch {progress.get('epoch', 0)}/{progress.get('epochs', 0)}", f"step {step}/{total}"]
    else:
        span = f"epochs {first}–{last}" if last > first else f"epoch {first}"
        parts = [span, f"epoch {max(epoch, first)}",
                 f"step {progress.get('global_step', step)} ({step}/{total} this run)"]
    if progress.get("steps_per_s"):
        parts.append(f"{progress['steps_per_s']:.1f} steps/s")
    if state in (TRAINING, STOPPING):
        eta = progress.get("eta_s")
        parts.append("ETA estimating…" if eta is None else f"ETA {format_seconds(eta)}")
    names = {TRAINING: "training", STOPPING: "stopping", EVALUATING: "evaluating", IDLE: "done"}
    prefix = names.get(state, state)
    if state == IDLE and step < total:
        prefix = "stopped"
    return f"{prefix} · " + " · ".join(parts)


def metrics_rows(runner: Runner, evaluated_at: int | None = None) -> list[tuple[str, str]]:
    """(name, value) rows: last epoch's metrics, latest step loss, and the last evaluation while it is
    current. ``evaluated_at``: the run's step when that evaluation was taken (the Dashboard notes it). An
    evaluation older than the training since is left out, not shown beside newer figures as if current."""
    rows: list[tuple[str, str]] = []
    latest = runner.curves.history_obj.latest()
    for name in ("epoch", "step", "loss", "train_loss", "lr"):
        value = latest.get(name)
        if value is not None:
            rows.append((name, _fmt(value)))
    for name in sorted(k for k in latest if k.startswith("eval_")):
        rows.append((name, _fmt(latest[name])))
    step = latest.get("step")
    stale = evaluated_at is not None and isinstance(step, int | float) and step > evaluated_at
    if runner.last_eval and not stale:
        rows.append(("evaluated", f"at step {evaluated_at}" if evaluated_at else "before training"))
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


# two lines, whatever the text: the rows below never move when the status or the device hint changes
_TWO_LINES = ("line-height:17px;display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;"
              "overflow:hidden;overflow-wrap:normal")


def _status_html(text: str) -> str:
    escaped = html.escape(text)
    return f"<div class='ms-dashboard-status-text' title='{escaped}' style='{_TWO_LINES}'>{escaped}</div>"


AUTO: Any = "auto"  # Dashboard(run_dir=AUTO): a new folder under ./runs unless the runner has one


def _run_dir_html(run_dir: Path | None) -> str:
    """One line saying where the run's checkpoints go (the full path on hover)."""
    if run_dir is None:
        text, full = "checkpoints: none saved (no run folder; Dashboard(run_dir=...) sets one)", ""
    else:
        try:
            shown = os.path.relpath(run_dir)
        except ValueError:  # another drive
            shown = str(run_dir)
        shown = shown if not shown.startswith("..") else str(run_dir)
        text = f"checkpoints: last.ckpt and best.ckpt written to {shown}/"
        full = text if shown == str(run_dir) else f"{text} ({run_dir})"
    escaped = html.escape(text)
    # the widget's inner box must not grow to the line's width: the line ends in "…", the path on hover
    return ("<style>.widget-html-content:has(> .ms-dashboard-run-dir){min-width:0;overflow:hidden}</style>"
            f"<div class='ms-dashboard-run-dir' title='{html.escape(full or text)}' style='color:"
            "var(--jp-ui-font-color2);font-size:var(--jp-ui-font-size0);white-space:nowrap;overflow:hidden;"
            f"text-overflow:ellipsis'>{escaped}</div>")


# button -> its style while it can be pressed; a disabled button drops its colour so it looks unavailable
_BUTTON_STYLES = {"fit_button": "primary", "stop_button": "warning"}
_NARROW = "0 12px 2px 0"


class Dashboard(StaticRendering, w.VBox):
    """Evaluate / Fine-tune / Stop a ``Runner`` from buttons; device, epochs, learning rate, live curves.

    Every number it shows comes from one place at one moment: on each recorded step (throttled to
    ``max_updates_per_s``) the status line, the metrics table and the live chart are updated together from
    the run's history and ``Runner.progress()``.
    """

    def __init__(self, runner: Runner, epochs: int = 1, max_updates_per_s: float = 2.0,
                 run_dir: str | Path | None = AUTO) -> None:
        self.runner = runner
        if run_dir is AUTO:  # last.ckpt / best.ckpt by default, in a run folder beside the notebook
            if runner.run_dir is None:
                runner.run_dir = default_run_dir(runner.curves.history_obj.label or "run")
        elif run_dir is not None:
            runner.run_dir = Path(run_dir)
        self.run_dir_note = w.HTML(_run_dir_html(runner.run_dir), layout=w.Layout(min_width="0"))
        self._min_interval = 1.0 / max_updates_per_s
        self._last_update = 0.0
        self._note = ""
        self._figure: tuple[tuple[Any, ...], bytes] | None = None  # (what it shows, PNG) of the last figure
        self.figures_drawn = 0  # PNGs drawn for the saved copy (one per finished run while it is displayed)
        devices = runner.devices()
        wide = {"description_width": "initial"}  # labels in full: "learning rate", not "learning r…"
        self.device = w.Dropdown(options=list(devices.available), value=devices.current, description="device",
                                 style=wide, layout=w.Layout(width="auto", margin=_NARROW))
        self.device_note = w.HTML(layout=w.Layout(margin="0", flex="1 1 0", min_width="0", height="36px",
                                                  overflow="hidden"))
        self.device_note.add_class("ms-dashboard-device-note")
        self.epochs = w.BoundedIntText(value=epochs, min=1, max=10_000, description="epochs", style=wide,
                                       layout=w.Layout(width="130px", margin=_NARROW))
        lr = runner.learning_rate()
        shown_lr = float(f"{lr:.6g}") if lr is not None else 0.0  # not float32 noise like 0.0199999
        self.lr = w.FloatText(value=shown_lr, description="learning rate", disabled=lr is None, step=None,
                              style=wide, layout=w.Layout(width="200px", margin=_NARROW))
        self.evaluate_button = w.Button(description="Evaluate", icon="check", tooltip="Evaluate on eval data")
        self.fit_button = w.Button(description="Fine-tune", icon="play", button_style="primary",
                                   tooltip="Train for the epochs above")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="Stop after the current step")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress",
                                        layout=w.Layout(width="auto", flex="0 0 220px"))
        self.status = w.HTML(value=_status_html("ready"), layout=w.Layout(
            flex="1 1 0", min_width="0", height="38px", overflow="hidden", margin="0 0 0 8px"))
        self.status.add_class("ms-dashboard-status")
        self.metrics = w.HTML(value=_table([]), layout=w.Layout(flex="0 0 210px", margin="0 0 0 12px"))
        self._evaluated: tuple[Any, int | None] = (None, None)  # (runner.last_eval, step when it was taken)
        self.error = w.HTML(value="")
        # fastai's tools: learning-rate finder, gradual unfreezing (fine_tune), interpretation
        self.find_lr_button = w.Button(description="Find LR", icon="search",
                                       tooltip="Learning-rate finder: a short ramp, weights restored after")
        self.interpret_button = w.Button(description="Interpret", icon="table",
                                         tooltip="Confusion matrix, per-class accuracy, top losses")
        self.freeze_epochs = w.BoundedIntText(
            value=0, min=0, max=10_000, description="unfreeze after", style={"description_width": "initial"},
            layout=w.Layout(width="150px", margin=_NARROW),
            tooltip="Gradual unfreezing (fastai's fine_tune): train the head alone this many epochs with the "
                    "backbone frozen, then everything at lower, discriminative rates. 0: as the plan says.",
        )
        self.notice = w.HTML(value="")
        self.lr_finder = LRFinderView()
        self.lr_finder.on_use(self._use_lr)
        self.interpretation = InterpretationView()
        self.adopt_static(self.lr_finder, self.interpretation)
        self._shown: dict[str, Any] = {"lr": None, "interpretation": None}
        self._shown_lock = threading.Lock()  # refresh runs on the training thread and the kernel's
        runner.curves.view.enabled = True
        runner.curves.view.embedded = True  # steps reach the chart with this widget's updates only
        self.curves = runner.curves.view.widget()  # the live chart, with its own smoothing and log controls

        # With the JupyterLab extension, a notebook's cells tagged ms-eval / ms-finetune run instead, so the
        # tutorial's code stays visible while the buttons drive it; without it the widget runs them itself.
        frontend.probe()
        self.evaluate_button.on_click(lambda _: self._act(self._evaluate))
        self.fit_button.on_click(lambda _: self._act(self._start_fit))
        self.stop_button.on_click(lambda _: self._act(self.runner.stop))
        self.find_lr_button.on_click(lambda _: self._act(self.runner.start_find_lr))
        self.interpret_button.on_click(lambda _: self._act(self.runner.start_interpret))
        self.device.observe(self._on_device, names="value")
        runner.add_listener(self._on_event)
        runner.curves.add_listener(self._on_record)

        # Rows that keep their height in every state (a hint or a status of any length takes two lines, no
        # more, no less), and the buttons, the status line and the chart one after the other, so Stop, the
        # status and the chart fit one 700 px screen together; the metrics table sits beside the chart when
        # there is room and under it when not.
        wrap = w.Layout(flex_flow="row wrap", align_items="center")
        settings = w.HBox([self.epochs, self.lr, self.freeze_epochs], layout=wrap)
        device = w.HBox([self.device, self.device_note], layout=w.Layout(align_items="center", width="100%"))
        for button in (self.evaluate_button, self.fit_button, self.stop_button, self.find_lr_button,
                       self.interpret_button):
            button.layout = w.Layout(width="auto", margin="2px 6px 2px 0")
        buttons = w.HBox([self.evaluate_button, self.fit_button, self.stop_button, self.find_lr_button,
                          self.interpret_button], layout=wrap)
        buttons.add_class("ms-dashboard-buttons")
        progress = w.HBox([self.progress, self.status], layout=w.Layout(align_items="center", width="100%"))
        progress.add_class("ms-dashboard-progress")
        self.curves.layout.flex = "1 1 540px"
        self.curves.layout.min_width = "0"
        body = w.HBox([self.curves, self.metrics], layout=w.Layout(flex_flow="row wrap", width="100%",
                                                                   align_items="flex-start"))
        super().__init__([self.run_dir_note, settings, device, buttons, progress, self.error, self.notice,
                          body, self.lr_finder, self.interpretation])
        self.add_class("ms-dashboard")
        self.refresh()

    @property
    def status_text(self) -> str:
        """The status line as plain text ("training · epoch 2/10 · step 12/70 · …")."""
        return html.unescape(self.status.value.split(">", 1)[1].rsplit("<", 1)[0])

    def detach(self) -> None:
        """Stop following the runner's curves (a Studio replaces its Dashboard after each Apply)."""
        self.runner.curves.remove_listener(self._on_record)

    def settings(self) -> dict[str, Any]:
        """The epochs and learning rate as set in the fields, to carry over to a new Dashboard."""
        return {"epochs": int(self.epochs.value), "lr": None if self.lr.disabled else float(self.lr.value)}

    def use_settings(self, settings: dict[str, Any]) -> None:
        """Put ``settings()`` of an earlier Dashboard into the fields (applied on the next Fine-tune)."""
        if settings.get("epochs"):
            self.epochs.value = int(settings["epochs"])
        if settings.get("lr") and not self.lr.disabled:
            self.lr.value = float(settings["lr"])

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
        if self._run_tagged(TAG_FINETUNE):
            return
        if self.freeze_epochs.value and self.runner.can_fine_tune():
            self.runner.start_fine_tune(int(self.epochs.value), int(self.freeze_epochs.value))
        else:
            self.runner.start_fit(int(self.epochs.value))

    def _use_lr(self, lr: float) -> None:
        """The finder's "Use suggestion": the learning rate field (applied at the next Fine-tune)."""
        self.lr.value = float(f"{lr:.3g}")

    def find_lr(self, **kwargs: Any) -> Any:
        """Run the learning-rate finder now (blocking) and show its curve; returns the LRFinderResult."""
        result = self.runner.find_lr(**kwargs)
        self.refresh()
        return result

    def interpret(self, top_k: int = 9) -> Any:
        """Interpret the network on the eval data now (blocking) and show it; returns the Interpretation."""
        self.interpretation.top_k = top_k
        result = self.runner.interpret(top_k)
        self.refresh()
        return result

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
    def _on_record(self, record: dict[str, Any]) -> None:
        """A record reached the history (training thread): chart, status and table follow it together."""
        if record.get("type") != "step":
            self.runner.curves.view.update(force=True)
            return
        now = time.monotonic()
        if now - self._last_update < self._min_interval:
            return
        self._last_update = now
        self.runner.curves.view.update(force=True)
        self.refresh(progress_only=True)

    def _on_event(self, event: str, runner: Runner) -> None:
        self._note = ""
        if event == "step":
            return  # followed through the history (_on_record), where the step is already recorded
        if event == "error":
            self._show_error(runner.error_text or str(runner.error))
        self.refresh()
        if event == "state" and runner.state == IDLE:  # a run ended: the saved copy shows its figure
            self.refresh_static()

    def refresh(self, progress_only: bool = False) -> None:
        """Copy the runner's state into the widgets."""
        runner = self.runner
        progress = runner.progress()
        self.progress.value = min(max(progress["fraction"], 0.0), 1.0)
        text = progress_text(progress, runner.state)
        if self._note and runner.state == IDLE:  # a tagged cell was asked to run and has not started yet
            text = self._note
        self.status.value = _status_html(text)
        self.metrics.value = _table(metrics_rows(runner, self._evaluation_step()))
        if progress_only:
            return
        actions = runner.actions()
        self.evaluate_button.disabled = not actions["evaluate"]
        self.fit_button.disabled = not actions["fit"]
        self.stop_button.disabled = not actions["stop"]
        for name, style in _BUTTON_STYLES.items():
            button = getattr(self, name)
            button.button_style = "" if button.disabled else style
        self.device.disabled = not actions["device"]
        self._explain_device(actions["device"])
        self.epochs.disabled = runner.running
        self.lr.disabled = runner.running or runner.learning_rate() is None
        self.lr.tooltip = ("the optimizer uses a learning-rate schedule: set it when building the optimizer"
                           if runner.learning_rate() is None else "applied when you press Fine-tune")
        self.progress.bar_style = {"stopping": "warning"}.get(runner.state, "danger" if runner.error else "")
        self._refresh_tools(actions)

    def _evaluation_step(self) -> int | None:
        """The run's step when the runner's last evaluation was taken (noted the first time it is seen)."""
        if self.runner.last_eval is not self._evaluated[0]:
            step = self.runner.curves.history_obj.latest().get("step")
            self._evaluated = (self.runner.last_eval, int(step) if isinstance(step, int | float) else 0)
        return self._evaluated[1]

    def _refresh_tools(self, actions: dict[str, bool]) -> None:
        """The fastai tools' buttons, the runner's notice, and a new finder curve or interpretation."""
        runner = self.runner
        self.find_lr_button.disabled = not actions["fit"]
        self.interpret_button.disabled = not actions["evaluate"]
        self.freeze_epochs.disabled = runner.running or not runner.can_fine_tune()
        self.notice.value = ("" if not runner.notice else
                             f"<div class='ms-dashboard-notice' style='color:var(--jp-warn-color0,#e65100)'>"
                             f"{html.escape(runner.notice)}</div>")
        if runner.state != IDLE:
            return
        with self._shown_lock:  # show each new result once, whichever thread gets here first
            if runner.last_lr_find is not None and runner.last_lr_find is not self._shown["lr"]:
                self._shown["lr"] = runner.last_lr_find
                self.lr_finder.show(runner.last_lr_find)
            interpretation = runner.last_interpretation
            if interpretation is not None and interpretation is not self._shown["interpretation"]:
                self._shown["interpretation"] = interpretation
                self.interpretation.show(interpretation)

    def _explain_device(self, can_change: bool) -> None:
        """Say why the device cannot be chosen now, beside the dropdown and in its tooltip."""
        current = self.device.value
        if self.runner.running:
            why = "the device cannot change while a run is in progress"
        elif not can_change:
            why = (f"fixed to {current} in this kernel: MindSpore cannot switch device once it has run; "
                   "restart the kernel to choose another")
        elif len(self.device.options) == 1:
            why = f"only {current} is available in this process (no GPU or Ascend found)"
        else:
            why = ""
        self.device.tooltip = why or "the device the next run uses"
        self.device_note.value = (
            f"<div title='{html.escape(why)}' style='color:var(--jp-ui-font-color2);"
            f"font-size:var(--jp-ui-font-size0);{_TWO_LINES}'>{html.escape(why)}</div>" if why else ""
        )

    # -- the static copy -----------------------------------------------------------------------------
    def static_png(self) -> bytes | None:
        """The curves of every run so far (PNG at 2x), drawn again only when the history changed."""
        curves = self.runner.curves
        runs = [*curves.overlays, curves.history_obj]
        if not any(len(run) or len(run.epochs()) for run in runs):
            return None
        key = (tuple((id(run), run.version) for run in runs), curves.smoothing, curves.log_y)
        if self._figure is None or self._figure[0] != key:
            self._figure = (key, curves.figure_png())
            self.figures_drawn += 1
        return self._figure[1]

    def static_html(self) -> str:
        settings = (f"device {html.escape(str(self.device.value))} · epochs {self.epochs.value} · "
                    f"learning rate {self.lr.value:g}")
        text = progress_text(self.runner.progress(), self.runner.state)
        parts = [self.run_dir_note.value, f"<div>{settings}</div>",
                 f"<div style='font-weight:600;margin:4px 0'>{html.escape(text)}</div>"]
        if self.error.value:
            parts.append(self.error.value)
        parts.append(f"<div style='display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start'>"
                     f"<div>{self.metrics.value}</div>")
        png = self.static_png()
        if png:
            parts.append(f"<div style='flex:1 1 360px'>{png_html(png, 720, 'training curves')}</div>")
        parts.append("</div>")
        if self.lr_finder.result is not None:
            parts.append(section("Learning-rate finder", self.lr_finder.static_html()))
        if self.interpretation.interpretation is not None:
            parts.append(section("Interpretation", self.interpretation.static_html()))
        return "".join(parts)
