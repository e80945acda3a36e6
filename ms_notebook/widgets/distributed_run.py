"""The view of a DistributedRun: state and progress, rank 0's live curves, a per-rank log tail, Stop.

It only presents and delegates: every value comes from the run (``runs/launch.py``), the Stop button calls
``run.stop()``. Updates arrive through the run's listener from its monitoring thread (on state changes and
about once a second); the curves come through the run's follower into the existing live chart.

Its static copy (``widgets.static``: the snapshot HTML beside the widget view) is refreshed when the job ends,
so a saved or exported notebook shows how the job went without a kernel.
"""

from __future__ import annotations

import base64
import html
import uuid
from typing import Any

import ipywidgets as W

from ms_notebook.runs.launch import DONE, FAILED, FINISHED, RUNNING, STOPPED, DistributedRun
from ms_notebook.widgets.static import StaticRendering

LOG_LINES = 25
_STATE_STYLE = {FAILED: "danger", STOPPED: "warning", FINISHED: "success"}


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    value = round(value)
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


def status_text(run: DistributedRun) -> str:
    """One line: state (or stopping), epoch, step of total, speed, time since launch."""
    p = run.progress()
    state = run.state
    if run.stop_requested_at is not None and not run.done:
        state = "stopping"
    parts = [f"{run.script.name} on {run.worker_num} workers", state]
    if p["total"]:
        parts += [f"epoch {p['epoch']}/{p['epochs']}", f"step {p['step']}/{p['total']}"]
        if p["steps_per_s"] and state in (RUNNING, "stopping"):
            parts.append(f"{p['steps_per_s']:.1f} steps/s")
    parts.append(_seconds(p["elapsed_s"]))
    return " · ".join(parts)


def error_text(run: DistributedRun) -> str:
    """The failure, with the failing rank's traceback ('' when nothing failed)."""
    if run.error is None:
        return ""
    tb = run.error.traceback
    return f"{run.error}\n\n{tb}" if tb else str(run.error)


def _error_html(text: str) -> str:
    return ("<pre class='ms-distributed-error' style='color:var(--jp-error-color1,#c00);white-space:pre-wrap;"
            f"max-height:16em;overflow:auto'>{html.escape(text)}</pre>")


def _log_choices(run: DistributedRun) -> list[tuple[str, Any]]:
    return [*((f"rank {r}", r) for r in run.ranks()), ("scheduler", "scheduler"), ("msrun", "msrun")]


def snapshot_html(run: DistributedRun, with_figure: bool = True) -> str:
    """A static picture of the run: status, return codes, error, the curves (PNG) and rank 0's log tail."""
    style = "font-family:var(--jp-ui-font-family,sans-serif);color:var(--jp-ui-font-color1,#222)"
    parts = [f"<div class='ms-distributed-run-snapshot' style='{style}'>",
             f"<div><b>{html.escape(status_text(run))}</b></div>",
             f"<div>run folder: <code>{html.escape(str(run.run_dir))}</code></div>"]
    if run.done and run.returncodes:
        codes = ", ".join(f"rank {r}: {'?' if c is None else c}" for r, c in sorted(run.returncodes.items()))
        parts.append(f"<div>exit codes: {html.escape(codes)}</div>")
    if run.error is not None:
        parts.append("<pre style='color:var(--jp-error-color1,#c00);white-space:pre-wrap'>"
                     f"{html.escape(error_text(run))}</pre>")
    if with_figure and len(run.curves.history_obj):
        png = base64.b64encode(run.curves.figure_png()).decode("ascii")
        parts.append(f"<img alt='curves of rank 0' src='data:image/png;base64,{png}'/>")
    tail = run.log_tail(0, 10)
    if tail:
        parts.append(f"<details><summary>rank 0 log (last lines)</summary><pre>{html.escape(tail)}</pre>"
                     "</details>")
    parts.append("</div>")
    return "".join(parts)


class DistributedRunView(StaticRendering, W.VBox):
    """Progress, live curves (rank 0), the log tail of a chosen rank and a Stop button for one run."""

    def __init__(self, run: DistributedRun) -> None:
        self.run = run
        self.status = W.Label(value=status_text(run))
        self.status.add_class("ms-distributed-status")
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="Stop after one common step on every rank; each saves last.ckpt")
        self.stop_button.on_click(lambda _b: self._stop())
        self.folder = W.HTML(value=f"<code>{html.escape(str(run.run_dir))}</code>")
        self.error = W.HTML(value="")
        self.log_choice = W.Dropdown(options=_log_choices(run), value=run.ranks()[0], description="log")
        self.log_choice.observe(lambda _c: self.refresh_log(), names="value")
        self.log_view = W.HTML(value="")
        self.log_view.add_class("ms-distributed-log")
        run.curves.view.enabled = True
        run.curves.view.embedded = True
        self.chart = run.curves.view.widget()  # the live chart the follower feeds
        self.chart.layout.flex = "1 1 auto"
        self.chart.live = not run.done  # the follower started before this view enabled the chart
        super().__init__([
            W.HBox([self.progress, self.status]), W.HBox([self.stop_button, self.folder]), self.error,
            self.chart, self.log_choice, self.log_view,
        ])
        self.add_class("ms-distributed-run")
        run.add_listener(self._on_event)
        self.refresh()

    def _stop(self) -> None:
        self.run.stop()
        self.refresh()

    def _on_event(self, event: str, run: DistributedRun) -> None:
        self.refresh()
        if event == "state" and run.done:
            self.refresh_static()

    def static_html(self) -> str:
        return snapshot_html(self.run, with_figure=self.run.state in DONE)

    def static_text(self) -> str:
        return repr(self.run)

    def refresh_log(self) -> None:
        text = self.run.log_tail(self.log_choice.value, LOG_LINES)
        self.log_view.value = ("<pre style='max-height:16em;overflow:auto;white-space:pre-wrap;margin:0;"
                          "font-size:var(--jp-code-font-size,12px)'>"
                          f"{html.escape(text) or '<i>(empty so far)</i>'}</pre>")

    def refresh(self) -> None:
        """Copy the run's state into the widgets."""
        run = self.run
        p = run.progress()
        self.status.value = status_text(run)
        self.progress.value = 1.0 if run.state == FINISHED else p["fraction"]
        self.progress.bar_style = _STATE_STYLE.get(run.state, "")
        self.stop_button.disabled = run.done or run.stop_requested_at is not None
        run.curves.view.update(force=True)  # embedded: the chart gets rank 0's steps with this update (~1/s)
        if run.done:
            self.chart.live = False
            saved = run.checkpoints()
            text = html.escape(str(run.run_dir))
            if saved:
                text += f" · last checkpoints: {', '.join(f'rank_{r}/last.ckpt' for r in saved)}"
            self.folder.value = f"<code>{text}</code>"
        self.error.value = "" if run.error is None else _error_html(error_text(run))
        if len(self.log_choice.options) != len(_log_choices(run)):
            self.log_choice.options = _log_choices(run)
        self.refresh_log()


def display_run(run: DistributedRun) -> DistributedRunView:
    """Show ``run`` in the current cell (what ``DistributedRun._ipython_display_`` calls)."""
    from IPython.display import display

    view = DistributedRunView(run)
    display(view)
    if run.done:  # it may have ended while the view was being built
        view.refresh_static()
    return view


class LaunchPanel(StaticRendering, W.VBox):
    """"Launch on N workers": write the plan's data-parallel script into a new run folder, launch it, show it.

    ``plan`` is the TransferPlan to run; ``script_options`` go to ``TransferPlan.to_script`` (``network=``,
    ``dataset=``, ``optimizer=``, ... for networks other than the demo's). ``run_root`` is where run folders
    are made (default ``./runs``).
    """

    def __init__(self, plan: Any, workers: int = 2, epochs: int = 3, script_options: dict | None = None,
                 run_root: str | None = None) -> None:
        self.plan = plan
        self.workers = workers
        self.script_options = dict(script_options or {})
        self.run_root = run_root
        self.run: DistributedRun | None = None
        self.view: DistributedRunView | None = None
        self.epochs = W.BoundedIntText(value=epochs, min=1, max=100_000, description="epochs")
        self.launch_button = W.Button(description=self._label(), icon="rocket", button_style="primary",
                                      layout=W.Layout(width="auto"))
        self.launch_button.on_click(lambda _b: self.launch())
        self.message = W.HTML(value="")
        super().__init__([W.HBox([self.epochs, self.launch_button]), self.message])
        self.add_class("ms-launch-panel")

    def _label(self) -> str:
        return f"Launch on {self.workers} workers"

    def static_html(self) -> str:
        if self.view is not None:
            return self.view.static_html()
        return f"<p>{html.escape(self._label())} (not launched)</p>{self.message.value}"

    def set_workers(self, workers: int) -> None:
        self.workers = int(workers)
        self.launch_button.description = self._label()

    def launch(self) -> DistributedRun | None:
        """Write the script and launch it (errors are shown in the panel, the kernel carries on)."""
        import time
        from pathlib import Path

        from ms_notebook.runs.launch import launch

        if self.run is not None and not self.run.done:
            self.message.value = "<i>a job is running: stop it first</i>"
            return None
        self.message.value = ""
        root = Path(self.run_root) if self.run_root is not None else Path.cwd() / "runs"
        folder = root / f"launch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        try:
            script = self.plan.to_script(folder / "train.py", epochs=int(self.epochs.value),
                                         **self.script_options)
            self.run = launch(script, workers=self.workers, run_dir=folder)
        except Exception as error:  # shown in the panel
            self.message.value = _error_html(f"{type(error).__name__}: {error}")
            return None
        self.view = DistributedRunView(self.run)
        self.adopt_static(self.view)
        self.run.add_listener(self._on_event)
        self.children = [self.children[0], self.message, self.view]
        self._on_event("state", self.run)
        return self.run

    def _on_event(self, event: str, run: DistributedRun) -> None:
        if event == "state":
            self.launch_button.disabled = not run.done
            self.epochs.disabled = not run.done
