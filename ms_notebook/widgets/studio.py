"""Studio: one widget for a transfer-learning lesson, with tabs Browse / Transfer / Run.

It only composes and delegates: the Browse tab is a :class:`CheckpointBrowser` (the checkpoint compared with
the network), the Transfer tab a :class:`TransferPanel` (what to reload and freeze; Apply), the Run tab a
:class:`Dashboard` over a :class:`Runner` that is (re)built after each Apply, because the optimizer must be
built over the trainable parameters *after* freezing. All runs share one :class:`LiveCurves`, so every new
Apply starts a new labelled run and earlier runs stay on the plot as overlays ("frozen" vs "unfrozen").

Each Apply starts from the network as it was when the Studio was created (``reset_before_apply``): without
that, a second run would begin with the head the first run trained, and BatchNorm cells frozen by an earlier
plan would stay frozen. The snapshot and the defaults live in :mod:`ms_notebook.runs.lesson` (MindSpore glue,
tested without widgets).
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ms_notebook.runs.lesson import NetworkSnapshot, default_loss, default_optimizer
from ms_notebook.widgets.browser import CheckpointBrowser
from ms_notebook.widgets.static import StaticRendering, section
from ms_notebook.widgets.transfer_panel import TransferPanel, summary_text

TAB_TITLES = ("Browse", "Transfer", "Run")
DEFAULT_OPTIMIZER_CODE = "nn.Momentum(params, learning_rate=0.02, momentum=0.9)"
PRESET_LABELS = {
    "defaults": "all reloaded, nothing frozen",
    "freeze_backbone": "frozen backbone",
    "train_last_1": "train last block",
    "train_last_2": "train last 2 blocks",
    "unfreeze_all": "all unfrozen",
}


class _StudioTransferPanel(TransferPanel):
    """The TransferPanel, telling the Studio before and after each Apply and which preset was pressed."""

    def __init__(self, studio: Studio, *args: Any, **kwargs: Any) -> None:
        self._studio = studio
        self.last_preset: str | None = None
        super().__init__(*args, **kwargs)

    def preset(self, key: str) -> None:
        super().preset(key)
        self.last_preset = key

    def _on_check(self, column: str, row_id: str, changed: list[str]) -> None:
        super()._on_check(column, row_id, changed)
        self.last_preset = None  # a hand-made selection

    def apply(self):
        if self._studio.runner is not None and self._studio.runner.running:
            self.message.value = (
                "<div class='ms-transfer-error'><b>Not applied:</b> a run is in progress; "
                "press Stop in the Run tab first.</div>"
            )
            return None
        if self._studio.reset_before_apply.value:
            self._studio.snapshot.restore()
        report = super().apply()
        if report is not None:
            self._studio._applied()
        return report


class Studio(StaticRendering, W.Tab):
    """``Studio(net, checkpoint, train_data, eval_data)``: Browse / Transfer / Run for one lesson.

    ``train_data``/``eval_data``: MindSpore datasets or (better) factories returning fresh ones.
    ``optimizer``: a factory over the trainable parameters (default Momentum lr 0.02), with
    ``optimizer_code`` its source for the "Show code" pane (and for the data-parallel script when the Run
    tab's Workers field is above 1: ``launcher`` then writes the plan with ``to_script(**script_options)``
    and launches it under msrun); ``class_names`` label the interpretation. After Apply, ``runner`` and
    ``dashboard`` are ready; ``curves`` holds every run of the session. The Run tab's Dashboard has the
    learning-rate finder, gradual unfreezing and the interpretation.
    """

    def __init__(
        self,
        net: Any,
        checkpoint: Any,
        train_data: Any,
        eval_data: Any = None,
        *,
        loss_fn: Any = None,
        optimizer: Any = None,
        make_train_step: Any = None,
        eval_step: Any = None,
        optimizer_code: str | None = None,
        epochs: int = 3,
        mode: str = "graph",
        run_dir: str | None = None,
        script_options: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        from ms_notebook.runs.curves import LiveCurves

        self.net = net
        self.checkpoint = checkpoint
        self.train_data, self.eval_data = train_data, eval_data
        self.loss_fn = loss_fn if loss_fn is not None else default_loss()
        self.epochs = epochs
        self.mode = mode
        self.run_dir = run_dir
        self.class_names = class_names  # shown by the Run tab's interpretation
        self.snapshot = NetworkSnapshot(net)
        # Drawn inside the Run tab: the Dashboard embeds the curves' live chart and enables it.
        self.curves = LiveCurves(label="run 1", display=False)
        self.runner: Any = None
        # your own MindSpore 2.x step, built for each optimizer Apply makes: make_train_step(optimizer)
        self.make_train_step, self.eval_step = make_train_step, eval_step
        self.dashboard: Any = None
        self.runs = 0

        self.browser = CheckpointBrowser(checkpoint, net)
        if optimizer is None:
            optimizer, optimizer_code = default_optimizer, optimizer_code or DEFAULT_OPTIMIZER_CODE
        self.reset_before_apply = W.Checkbox(
            True, description="start each Apply from the initial network (fresh head, nothing frozen)",
            indent=False, layout=W.Layout(width="auto"),
        )
        self.transfer = _StudioTransferPanel(
            self, net, checkpoint, optimizer=optimizer, optimizer_code=optimizer_code
        )
        self.plan = self.transfer.plan
        self.run_status = W.HTML(self._status_html(None))
        self.apply_here = W.Button(
            description="Apply the plan", icon="check", button_style="primary", layout=W.Layout(width="auto"),
            tooltip="Apply the Transfer tab's plan (same as its Apply button)",
        )
        self.apply_here.on_click(lambda _b: self.transfer._clicked(self.transfer.apply))
        self.run_box = W.VBox([self.run_status, self.apply_here])
        self._distributed(script_options, optimizer_code)
        super().__init__(
            children=[self.browser, W.VBox([self.reset_before_apply, self.transfer]), self.run_box],
            titles=TAB_TITLES,
        )
        self.add_class("ms-studio")
        self.adopt_static(self.browser, self.transfer)

    # -- after Apply -------------------------------------------------------------------------------------
    def run_label(self) -> str:
        """Legend label of the next run: the preset pressed, else the share of frozen parameters."""
        preset = self.transfer.last_preset
        what = PRESET_LABELS.get(preset or "", f"{self.plan.summary()['percent_frozen']:.0f}% frozen")
        return f"run {self.runs}: {what}"

    def _applied(self) -> None:
        """A plan was applied: new run label, new Runner over the freshly built optimizer, new Dashboard."""
        from ms_notebook.runs.runner import Runner

        self.runs += 1
        kept = self.dashboard.settings() if self.dashboard is not None else {}  # epochs, lr: as the user set
        if self.dashboard is not None:
            self.dashboard.detach()
        self.curves.new_run(self.run_label())
        self.runner = Runner(
            self.net, self.loss_fn, self.transfer.optimizer, self.train_data, self.eval_data,
            mode=self.mode, curves=self.curves, run_dir=self.run_dir,
            source_checkpoint=self.checkpoint if isinstance(self.checkpoint, str) else None,
            plan=self.plan, optimizer_factory=self.transfer.optimizer_factory, class_names=self.class_names,
            make_train_step=self.make_train_step, eval_step=self.eval_step,
        )
        self.runner.add_listener(self._on_runner_event)
        from ms_notebook.widgets.dashboard import Dashboard

        self.dashboard = Dashboard(self.runner, epochs=self.epochs)
        self.dashboard.use_settings(kept)
        self.adopt_static(self.dashboard)
        self.run_status.value = self._status_html(self.curves.history_obj.label)
        self._in_process = [self.run_status, self.dashboard]
        if self.workers.value == 1:
            self.run_box.children = [self.workers, *self._in_process]
        self.refresh_static()

    def _on_runner_event(self, event: str, runner: Any) -> None:
        if event == "state":
            busy = runner.running
            self.transfer.apply_button.disabled = busy
            self.reset_before_apply.disabled = busy
            self.workers.disabled = busy
            if not busy:  # fine_tune unfreezes the plan: the Transfer tab shows what the network is now
                self.transfer._sync()

    def _status_html(self, label: str | None) -> str:
        style = "font-family:var(--jp-ui-font-family);color:var(--jp-ui-font-color1);padding:2px 0"
        if label is None:
            text = (
                "No plan applied yet. Choose what to reload and freeze in the <b>Transfer</b> tab and press "
                "<b>Apply</b> (or apply the current plan here); then Evaluate or Fine-tune."
            )
        else:
            text = (
                f"<b>{html.escape(label)}</b> · {html.escape(summary_text(self.plan))}. "
                "Earlier runs stay on the plot for comparison."
            )
        return f"<div class='ms-studio-status' style='{style}'>{text}</div>"

    # -- Workers > 1: the plan as a data-parallel script under msrun ---------------------------------------
    def _distributed(self, script_options: dict[str, Any] | None, optimizer_code: str | None) -> None:
        """The Run tab's Workers field: 1 trains here (Dashboard), N > 1 launches the plan's script."""
        from ms_notebook.widgets.distributed_run import LaunchPanel

        options = {"optimizer": optimizer_code, **(script_options or {})}
        self.workers = W.BoundedIntText(value=1, min=1, max=64, description="workers",
                                        tooltip="1: train in this kernel; more: launch a data-parallel job")
        self.launcher = LaunchPanel(self.plan, workers=2, epochs=self.epochs, script_options=options,
                                    run_root=self.run_dir)
        self.adopt_static(self.launcher)
        self._in_process = list(self.run_box.children)
        self.workers.observe(self._on_workers, names="value")
        self.run_box.children = [self.workers, *self._in_process]

    def _on_workers(self, change: dict[str, Any]) -> None:
        if change["new"] > 1:
            self.launcher.set_workers(change["new"])
            self.run_box.children = [self.workers, self.launcher]
        else:
            self.run_box.children = [self.workers, *self._in_process]
        self.mark_static_stale()

    # -- the static copy ----------------------------------------------------------------------------------
    def static_html(self) -> str:
        """The three tabs one after the other (a static copy cannot switch tabs)."""
        if self.workers.value > 1:
            run = self.launcher.static_html()
        else:
            run = self.run_status.value + (self.dashboard.static_html() if self.dashboard is not None else "")
        bodies = {"Browse": self.browser.static_html(), "Transfer": self.transfer.static_html(), "Run": run}
        chosen = TAB_TITLES[self.selected_index or 0]
        return "".join(
            section(f"{title} tab" + (" (selected)" if title == chosen else ""), body)
            for title, body in bodies.items()
        )

    def static_png(self) -> bytes | None:
        if self.workers.value > 1 or self.dashboard is None:
            return None
        return self.dashboard.static_png()

    # -- shortcuts for scripts and tests -----------------------------------------------------------------
    def select_tab(self, title: str) -> None:
        """Show the tab called ``title`` (Browse, Transfer or Run); the saved copy marks it too."""
        self.selected_index = TAB_TITLES.index(title)
        self.refresh_static()
