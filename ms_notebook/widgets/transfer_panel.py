"""TransferPanel: tick what to reload and what to freeze on the network's parameter tree, apply, see the code.

Presents and delegates: every rule lives in :class:`ms_notebook.transfer.TransferPlan`; this file maps the
plan onto the reusable :class:`TreeView` (check columns Reload and Freeze; a status per row) and back. A tick
on a node ticks its subtree (the tree model's rule); the plan stays the single source of truth and the checks
are re-read from it after each change, so the tree never shows a selection the plan refuses (a reshaped head
cannot be ticked for reload).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as W
import traitlets

from ms_notebook.transfer import TransferPlan, TransferReport
from ms_notebook.widgets.highlight import highlight
from ms_notebook.widgets.static import StaticRendering
from ms_notebook.widgets.tree import TreeView
from ms_notebook.widgets.tree_model import Column, TreeModel, human_count

_STATIC = Path(__file__).parent / "static"
RELOAD, FREEZE = "reload", "freeze"
# row status (CSS class ms-status-<key>) and its label
STATUS_TEXT = {
    "matched": "match",
    "shape_mismatch": "shape mismatch",
    "missing": "not in checkpoint",
    "new": "kept at init",
}
_SEVERITY = ["matched", "new", "missing", "shape_mismatch"]
HEADER = (
    "<b>Transfer plan</b> <span style='color:var(--jp-ui-font-color2)'>— tick Reload / Freeze on a "
    "block or a tensor; statuses compare the network with the checkpoint</span>"
)


@dataclass(frozen=True)
class ParamInfo:
    """A network parameter shaped like ``TensorInfo`` so the tree model can hold it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int
    group: str = "weights"


def row_status(plan: TransferPlan, name: str) -> str:
    """matched (reloaded) / shape_mismatch / missing (not in the checkpoint) / new (not reloaded: kept at
    its initial values)."""
    status = plan.status[name]
    if status == "shape_mismatch":
        return "shape_mismatch"
    if status == "absent":
        return "missing"
    return "matched" if name in plan.reloaded else "new"


def warnings_html(plan: TransferPlan, freeze_bn_stats: bool = True) -> str:
    """The plan's traps (``plan.warnings()``) as a list to read before Apply ('' when there are none)."""
    items = "".join(
        f"<li class='ms-transfer-warning ms-warning-{w.kind}'>{html.escape(w.message)}</li>"
        for w in plan.warnings(freeze_bn_stats)
    )
    if not items:
        return ""
    return ("<div class='ms-transfer-warnings' style='color:var(--jp-warn-color0,#e65100);"
            f"font-family:var(--jp-ui-font-family)'><b>Before you apply:</b><ul style='margin:2px 0'>{items}"
            "</ul></div>")


def blocks_html(plan: TransferPlan, lr: Any = None) -> str:
    """The network's blocks (the steps of "Train last n" and of discriminative rates): share, state, rate."""
    rows = plan.block_table(lr)
    head = "<th>block</th><th>params</th><th>share</th><th>reloaded</th><th>training</th>"
    head += "<th>learning rate</th>" if lr is not None else ""
    body = "".join(
        f"<tr class='ms-block-{r['training'].replace(' ', '-')}'><td>{html.escape(r['block'])}</td>"
        f"<td style='text-align:right'>{human_count(r['params'])}</td>"
        f"<td style='text-align:right'>{r['share']:.1f}%</td><td>{r['reloaded']}</td><td>{r['training']}</td>"
        + (f"<td style='text-align:right'>{r['lr']:.2g}</td>" if lr is not None else "")
        + "</tr>"
        for r in rows
    )
    return ("<details class='ms-transfer-blocks' style='font-family:var(--jp-ui-font-family)'>"
            f"<summary>{len(rows)} blocks (the steps of Train last n and of discriminative rates)</summary>"
            "<div class='ms-scroll-x' style='max-height:14em;overflow:auto'>"
            "<table style='border-collapse:collapse;white-space:nowrap'>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>")


def summary_text(plan: TransferPlan) -> str:
    """The live summary line: parameters reloaded, trainable, % frozen."""
    s = plan.summary()
    return (
        f"{s['tensors_reloaded']} of {s['tensors']} tensors reloaded "
        f"({human_count(s['params_reloaded'])} parameters)"
        f" · {human_count(s['params_trainable'])} trainable · {s['percent_frozen']:.1f}% frozen"
    )


class _ReloadAwareModel(TreeModel):
    """TreeModel whose Reload column only ever toggles leaves that can be reloaded (same name and shape)."""

    reloadable: frozenset[str] = frozenset()

    def toggle_check(self, column: str, node_id: str) -> list[str]:
        if column != RELOAD or node_id not in self.nodes:
            return super().toggle_check(column, node_id)
        node = self.nodes[node_id]
        leaves = [node] if not node.children else self.visible_leaves(node)
        targets = [leaf.id for leaf in leaves if leaf.id in self.reloadable]
        checked = self.checks[column]
        new_value = not all(t in checked for t in targets)
        changed = [t for t in targets if (t in checked) != new_value]
        (checked.update if new_value else checked.difference_update)(changed)
        return changed


CODE_STYLE = (
    "margin:0;padding:6px 8px;overflow:auto;white-space:pre;font-family:var(--jp-code-font-family,monospace);"
    "font-size:var(--jp-code-font-size,13px);border:1px solid var(--jp-border-color2,#e0e0e0)"
)


class CodePane(StaticRendering, anywidget.AnyWidget):
    """Read-only, highlighted code with a Copy button (clipboard in the browser)."""

    _esm = _STATIC / "code_pane.js"
    _css = _STATIC / "code_pane.css"
    code = traitlets.Unicode("").tag(sync=True)
    code_html = traitlets.Unicode("").tag(sync=True)  # ``code`` highlighted while the pane is shown, else ""
    title = traitlets.Unicode("").tag(sync=True)

    @traitlets.observe("code")
    def _highlight(self, _change: dict[str, Any]) -> None:
        self.refresh_html()

    def refresh_html(self) -> None:
        """Highlight ``code`` while the pane is shown; a hidden pane holds none (it is saved with the
        notebook's widget state: ~18 KB of spans for nothing)."""
        shown = self.layout.display != "none"
        self.code_html = highlight(self.code) if shown else ""

    def static_html(self) -> str:
        title = f"<div style='color:var(--jp-ui-font-color2,#616161)'>{html.escape(self.title)}</div>"
        return f'{title}<pre class="ms-code" style="{CODE_STYLE}">{self.code_html}</pre>'


class TransferPanel(StaticRendering, W.VBox):
    """``TransferPanel(net, checkpoint, optimizer=None, optimizer_code=None)``.

    ``optimizer`` is a factory over the trainable parameters (``lambda params: nn.Adam(params, 1e-3)``)
    used by Apply; ``optimizer_code`` the same as source text for the "Show code" pane. After Apply,
    ``.report``,
    ``.optimizer`` and ``.net`` are ready for the next cell; ``.plan`` is the plan shown.
    """

    def __init__(
        self,
        net: Any,
        checkpoint: Any,
        *,
        optimizer: Any = None,
        optimizer_code: str | None = None,
        height: int = 380,
    ) -> None:
        self.net = net
        self.plan = TransferPlan(net, checkpoint)
        self.optimizer_factory = optimizer
        self.optimizer_code = optimizer_code
        self.report: TransferReport | None = None
        self.optimizer: Any = None
        params = {p.name: p for p in net.get_parameters()}
        infos = [
            ParamInfo(
                n, self.plan.shapes[n], str(params[n].dtype), int(params[n].size), int(params[n].nbytes)
            )
            for n in self.plan.names
        ]
        self.model = _ReloadAwareModel(
            infos,
            columns=[
                Column("status", "Status"),
                Column("shape", "Shape"),
                Column("ckpt_shape", "In file"),
                Column("params", "Params", "number"),
                Column(RELOAD, "Reload", "check"),
                Column(FREEZE, "Freeze", "check"),
            ],
        )
        self.model.reloadable = frozenset(n for n in self.plan.names if self.plan.status[n] == "match")
        self.model.values["ckpt_shape"] = {
            n: "—"
            if n not in self.plan.checkpoint_shapes
            else "×".join(map(str, self.plan.checkpoint_shapes[n]))
            for n in self.plan.names
        }
        self.model.expanded = {
            b for b in self.plan.blocks if b in self.model.nodes and self.model.nodes[b].children
        }
        self.tree = TreeView(self.model, height=height)
        # the status column is as wide as its longest label from the start: unticking a reload later (which
        # says "kept at init") does not widen it under the user's pointer
        self.tree.reserve_width("status", max(STATUS_TEXT.values(), key=len))
        self.tree.on_check(self._on_check)
        self.tree.observe(lambda _ch: self.mark_static_stale(), "rows")  # ticks: the copy catches up later

        self.presets = {
            "defaults": W.Button(description="Reload all matches", tooltip="Reload every name+shape match"),
            "freeze_backbone": W.Button(description="Freeze backbone", tooltip="Freeze reloaded, train new"),
            "train_last_1": W.Button(description="Train last block"),
            "train_last_2": W.Button(description="Train last 2 blocks"),
            "unfreeze_all": W.Button(description="Unfreeze all"),
        }
        for key, button in self.presets.items():
            button.layout = W.Layout(width="auto")
            button.on_click(lambda _b, key=key: self._clicked(lambda: self.preset(key)))
        self.summary = W.HTML()
        self.blocks_view = W.HTML()
        self.warnings = W.HTML()
        self.freeze_bn_stats = W.Checkbox(
            True, description="keep BN statistics of frozen layers fixed", indent=False
        )
        self.freeze_bn_stats.layout = W.Layout(width="auto")
        self.freeze_bn_stats.observe(lambda _ch: self._sync(), "value")
        # discriminative learning rates (fastai's lr=slice(lo, hi)): first block lo ... last block hi
        self.discriminative = W.Checkbox(False, description="discriminative learning rates", indent=False,
                                         layout=W.Layout(width="auto"))
        self.lr_low = W.FloatText(1e-4, description="first block", step=None, layout=W.Layout(width="180px"))
        self.lr_high = W.FloatText(1e-2, description="last block", step=None, layout=W.Layout(width="180px"))
        for control in (self.discriminative, self.lr_low, self.lr_high):
            control.observe(lambda _ch: self._sync(), "value")
        self.apply_button = W.Button(description="Apply", button_style="primary", icon="check",
                                     tooltip="Load and freeze as ticked, and build the optimizer")
        self.apply_button.on_click(lambda _b: self._clicked(self.apply))
        self.show_code = W.ToggleButton(False, description="Show code", icon="code")
        self.show_code.observe(lambda _ch: self._refresh_code(), "value")
        # which training idiom the code continues with: none (load, freeze, optimizer), or MindSpore 2.x's own
        # loop (value_and_grad + train_step, what its tutorials teach)
        self.code_style = W.Dropdown(options=[("load + freeze + optimizer", "model"),
                                              ("+ your own loop (MindSpore 2.x)", "functional")],
                                     value="model", layout=W.Layout(width="auto", display="none"),
                                     tooltip="The code's style: stop at the optimizer, or go on with "
                                             "value_and_grad, train_step and the loop")
        self.code_style.observe(lambda _ch: self._refresh_code(), "value")
        self.message = W.HTML()
        self.report_view = W.HTML(layout=W.Layout(min_width="0"))  # a wide report scrolls, not widens
        self.code_pane = CodePane(title="The same in plain MindSpore")
        self.code_pane.layout = W.Layout(display="none")
        header = W.HTML(HEADER)
        super().__init__(
            [
                header,
                W.HBox(list(self.presets.values()), layout=W.Layout(flex_flow="row wrap")),
                self.summary,
                self.blocks_view,
                self.tree,
                self.warnings,
                W.HBox([self.discriminative, self.lr_low, self.lr_high],
                       layout=W.Layout(align_items="center", flex_flow="row wrap")),
                W.HBox(
                    [self.apply_button, self.freeze_bn_stats, self.show_code, self.code_style],
                    layout=W.Layout(align_items="center", flex_flow="row wrap"),
                ),
                self.message,
                self.report_view,
                self.code_pane,
            ]
        )
        self.add_class("ms-transfer-panel")
        self._sync()

    def _clicked(self, action: Any) -> None:
        """A button's action: the saved copy catches up when the next cell runs (no blink now)."""
        with self.deferred_static():
            action()
            self.refresh_static()

    # ---- plan <-> tree ----
    def _on_check(self, column: str, _row_id: str, changed: list[str]) -> None:
        checked = self.model.checks[column]
        on = [n for n in changed if n in checked]
        off = [n for n in changed if n not in checked]
        if column == RELOAD:
            if on:
                self.plan.reload(*on)
            if off:
                self.plan.keep_init(*off)
        elif column == FREEZE:
            if on:
                self.plan.freeze(*on)
            if off:
                self.plan.unfreeze(*off)
        self._sync()

    def preset(self, key: str) -> None:
        """Run a preset: defaults, freeze_backbone, train_last_1, train_last_2, unfreeze_all."""
        plan = self.plan
        if key == "defaults":
            plan.reload(*[n for n in plan.names if plan.status[n] == "match"])
        elif key == "freeze_backbone":
            plan.freeze_backbone()
        elif key.startswith("train_last_"):
            plan.train_last(min(int(key.rsplit("_", 1)[1]), len(plan.blocks)))
        elif key == "unfreeze_all":
            plan.unfreeze_all()
        else:
            raise ValueError(f"unknown preset {key!r}")
        self._sync()

    def _sync(self) -> None:
        """Re-read checks, statuses and the summary from the plan and push them to the view."""
        plan = self.plan
        self.model.checks[RELOAD] = set(plan.reloaded)
        self.model.checks[FREEZE] = {n for n in plan.names if plan.is_frozen(n)}
        leaf_status = {n: row_status(plan, n) for n in plan.names}
        statuses = dict(leaf_status)
        for name, status in leaf_status.items():
            parts = name.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])
                if _SEVERITY.index(status) > _SEVERITY.index(statuses.get(prefix, "matched")):
                    statuses[prefix] = status
                else:
                    statuses.setdefault(prefix, status)
        self.model.values["status"] = {k: STATUS_TEXT[v] for k, v in statuses.items()}
        self.tree.set_statuses(statuses)
        self.summary.value = (
            "<div class='ms-transfer-summary' style='font-family:var(--jp-ui-font-family);"
            f"color:var(--jp-ui-font-color1)'>{html.escape(summary_text(plan))}</div>"
        )
        lr = self._lr_or_none()
        self.blocks_view.value = blocks_html(plan, lr if isinstance(lr, slice) else None)
        self.warnings.value = warnings_html(plan, self.freeze_bn_stats.value)
        self.lr_low.disabled = self.lr_high.disabled = not self.discriminative.value
        self._refresh_code()

    def learning_rates(self) -> slice | None:
        """``slice(first block, last block)`` with discriminative rates on, else None (the optimizer's)."""
        if not self.discriminative.value:
            return None
        return slice(float(self.lr_low.value), float(self.lr_high.value))

    def _lr_or_none(self) -> slice | None:
        try:
            lr = self.learning_rates()
            if lr is not None:
                self.plan.block_rates(lr)  # validates
            return lr
        except ValueError:
            return None

    def _refresh_code(self) -> None:
        self.code_pane.layout.display = "" if self.show_code.value else "none"
        self.code_style.layout.display = "" if self.show_code.value else "none"
        self.code_pane.code = self.plan.to_code(optimizer=self.optimizer_code, lr=self._lr_or_none(),
                                                style=self.code_style.value)
        self.code_pane.refresh_html()

    @property
    def code(self) -> str:
        return self.code_pane.code

    # ---- apply ----
    def apply(self) -> TransferReport | None:
        """Apply the plan to the network; show the report (or the error, with nothing changed)."""
        try:
            lr = self.learning_rates()
            report = self.plan.apply(
                optimizer=self.optimizer_factory, freeze_bn_stats=self.freeze_bn_stats.value,
                lr=lr if self.optimizer_factory is not None else None,
            )
        except Exception as exc:  # shown in the panel: a failed apply changed nothing
            self.message.value = (
                f"<div class='ms-transfer-error'><b>Not applied:</b> {html.escape(str(exc))}</div>"
            )
            return None
        self.report = report
        self.optimizer = report.optimizer
        self.message.value = "<div class='ms-transfer-applied'>Applied to the network.</div>"
        self.report_view.value = report._repr_html_()
        self.refresh_static()
        return report

    def static_html(self) -> str:
        """The plan as ticked (summary, rows with Reload / Freeze marks), what Apply said, code if shown."""
        parts = [f"<div>{HEADER}</div>", self.summary.value, self.tree.static_html(), self.message.value,
                 self.report_view.value]
        if self.show_code.value:
            parts.append(self.code_pane.static_html())
        return "".join(parts)
