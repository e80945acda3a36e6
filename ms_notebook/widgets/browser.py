"""CheckpointBrowser: a checkpoint as an explorable tree with per-tensor details, compare colours and filters.

Presents and delegates: the tree rules live in ``tree_model.TreeModel``, statistics in the checkpoint index,
compatibility in ``checkpoint.compare`` and the details HTML in ``tensor_view``. Layout: a header (file,
format, size, totals by dtype and group), a toolbar of toggles, then the tree view beside the details pane.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import ipywidgets as W

from ms_notebook.checkpoint.compare import PROBLEMS, CompareReport, CompareRow, compare
from ms_notebook.checkpoint.series import CheckpointSeries
from ms_notebook.checkpoint.sets import CheckpointSet
from ms_notebook.checkpoint.tree import split_name
from ms_notebook.widgets.set_panel import MergeControl, set_header_html, slices_html
from ms_notebook.widgets.static import StaticRendering
from ms_notebook.widgets.tensor_view import DETAILS_CSS, details_html
from ms_notebook.widgets.tree import TreeView
from ms_notebook.widgets.tree_model import Column, TreeModel, human_bytes, human_count

# layer diagnostics in the tree: columns, and the row statuses of layers outside healthy ranges
DIAGNOSTIC_COLUMNS = (
    Column("alpha", "α", "number"),
    Column("stable_rank", "St. rank", "number"),
    Column("spectral_norm", "σ max", "number"),
)
DIAGNOSTIC_STATUSES = {
    "under-trained": "under_trained",
    "over-trained": "over_trained",
    "not finite": "not_finite",
}


@dataclass(frozen=True)
class MissingParam:
    """A network parameter the checkpoint lacks, shown as a row so the compare report is visible in the
    tree."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int = 0
    group: str = "weights"


def _open(path_or_checkpoint: Any) -> Any:
    if isinstance(path_or_checkpoint, str | os.PathLike):
        from ms_notebook.checkpoint import open_checkpoint

        return open_checkpoint(path_or_checkpoint)
    return path_or_checkpoint


def _remote_html(remote: dict[str, Any] | None) -> str:
    """Where a remote checkpoint is and what listing it cost (nothing for a local file)."""
    if not remote:
        return ""
    return (
        f'<div class="ms-sub ms-remote">remote: {html.escape(str(remote["url"]))} · listed with '
        f"{int(remote['requests']):,} request{'s' if remote['requests'] != 1 else ''}, "
        f"{human_bytes(int(remote['bytes']))} in {float(remote['wall_s']):.2f} s</div>"
    )


def header_html(ck: Any) -> str:
    """File, format, size, tensors, parameters, totals by dtype and by group."""
    by_dtype: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_group: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in ck.entries:
        by_dtype[str(e.dtype)][0] += 1
        by_dtype[str(e.dtype)][1] += int(e.nbytes)
        g = by_group[getattr(e, "group", "weights")]
        g[0] += 1
        g[1] += int(e.numel)
        g[2] += int(e.nbytes)
    dtypes = " · ".join(
        f"{html.escape(k)} {v[0]:,} ({human_bytes(v[1])})" for k, v in sorted(by_dtype.items())
    )
    groups = " · ".join(
        f"{html.escape(k)} {v[0]:,} tensors, {human_count(v[1])} values ({human_bytes(v[2])})"
        for k, v in sorted(by_group.items())
    )
    name = os.path.basename(str(getattr(ck, "path", "")))
    num_params = getattr(ck, "num_params", sum(int(e.numel) for e in ck.entries))
    return (
        '<div class="ms-browser-header">'
        f'<div><b title="{html.escape(str(getattr(ck, "path", "")))}">{html.escape(name)}</b> · '
        f"{html.escape(str(getattr(ck, 'format', '')))} · {human_bytes(getattr(ck, 'file_size', 0))} · "
        f"{len(ck.entries):,} tensors · {human_count(int(num_params))} parameters</div>"
        f"{_remote_html(getattr(ck, 'remote', None))}"
        f'<div class="ms-sub">by dtype: {dtypes}</div><div class="ms-sub">by group: {groups}</div></div>'
        "<style>.ms-browser-header{font-family:var(--jp-ui-font-family);font-size:var(--jp-ui-font-size1);"
        "color:var(--jp-ui-font-color1);padding:2px 0;line-height:1.5}"
        ".ms-browser-header .ms-sub{color:var(--jp-ui-font-color2);"
        "font-size:var(--jp-ui-font-size0)}.ms-compare-summary{font-family:var(--jp-ui-font-family);"
        "font-size:var(--jp-ui-font-size1);color:var(--jp-ui-font-color1);line-height:1.5}</style>"
    )


class CheckpointBrowser(StaticRendering, W.VBox):
    """The browser widget. ``CheckpointBrowser(path_or_checkpoint, net=None)``; ``net`` may be a Cell, a
    mapping
    ``{name: (shape, dtype)}`` or a :class:`CompareReport`: rows are coloured by what ``load_param_into_net``
    would do. Given a :class:`CheckpointSeries` (``open_series``), it shows the series' last checkpoint, a
    "Δ first" column (relative change since the first checkpoint) and an "Over time" view."""

    def __init__(self, path_or_checkpoint: Any, net: Any = None, *, height: int = 440) -> None:
        self.series = path_or_checkpoint if isinstance(path_or_checkpoint, CheckpointSeries) else None
        if self.series is not None:
            path_or_checkpoint = self.series[-1]
        self.checkpoint = _open(path_or_checkpoint)
        self.model = TreeModel(self.checkpoint.entries)
        self.tree = TreeView(self.model, height=height)
        self.report: CompareReport | None = None
        self._report_rows: dict[str, CompareRow] = {}
        self._names = {e.name for e in self.checkpoint.entries}
        self._missing: dict[str, MissingParam] = {}
        self._diagnostic_statuses: dict[str, str] = {}
        self.diagnostics_table: Any = None

        self.header = W.HTML(header_html(self.checkpoint) + set_header_html(self.checkpoint))
        is_set = isinstance(self.checkpoint, CheckpointSet)
        # a remote set is read by ranges: merging (MindSpore's tools on whole files) needs it downloaded
        self.merge = MergeControl(self.checkpoint) if is_set and self.checkpoint.remote is None else None
        self.show_optimizer = W.Checkbox(False, description="optimizer state", indent=False)
        self.show_extra = W.Checkbox(False, description="extra values", indent=False)
        self.only_problems = W.Checkbox(False, description="only problems", indent=False, disabled=True)
        self.heatmap = W.Checkbox(False, description="heat map", indent=False)
        self.expand_all = W.Button(description="Expand all", layout=W.Layout(width="auto"))
        self.collapse_all = W.Button(description="Collapse all", layout=W.Layout(width="auto"))
        self.compare_summary = W.HTML("")
        self.diagnostics_button = W.Button(description="Layer diagnostics", layout=W.Layout(width="auto"),
                                           tooltip="alpha, stable rank and spectral norm of every layer")
        self.diagnostics_summary = W.HTML("")
        for box in (self.show_optimizer, self.show_extra, self.only_problems, self.heatmap):
            box.layout = W.Layout(width="auto", margin="0 12px 0 0")
        self.details = W.HTML(
            DETAILS_CSS + '<div class="ms-details ms-note">Select a tensor to see its values.</div>'
        )
        # side by side down to a 1024 px screen with the file browser open, so the statistics appear beside
        # the row clicked; below the tree only on narrower outputs
        self.details.layout = W.Layout(
            flex="2 1 200px", min_width="0", overflow="auto", max_height=f"{height + 60}px"
        )
        self.tree.layout = W.Layout(flex="3 1 350px", min_width="0")

        self.show_optimizer.observe(lambda ch: self._group("optimizer", ch["new"]), "value")
        self.show_extra.observe(lambda ch: self._group("extra", ch["new"]), "value")
        self.only_problems.observe(lambda _ch: self._apply_statuses(), "value")
        self.heatmap.observe(lambda _ch: self._show_details(), "value")
        self.expand_all.on_click(lambda _b: self._expand(True))
        self.collapse_all.on_click(lambda _b: self._expand(False))
        self.diagnostics_button.on_click(lambda _b: self._diagnostics_clicked())
        self.tree.observe(lambda _ch: self._show_details(), "selected")
        self.tree.observe(lambda _ch: self.mark_static_stale(), ["rows", "selected"])  # the copy catches up

        toolbar = W.HBox(
            [
                W.HTML("<span style='color:var(--jp-ui-font-color2)'>Show:&nbsp;</span>"),
                self.show_optimizer,
                self.show_extra,
                self.only_problems,
                self.heatmap,
                self.expand_all,
                self.collapse_all,
                self.diagnostics_button,
            ],
            layout=W.Layout(align_items="center", flex_flow="row wrap"),
        )
        body = W.HBox(
            [self.tree, self.details],
            layout=W.Layout(width="100%", align_items="flex-start", flex_flow="row wrap"),
        )
        merge = [self.merge] if self.merge is not None else []
        self.over_time = None
        if self.series is not None:
            from ms_notebook.widgets.series_view import OverTimeView

            self.over_time = OverTimeView(self.series)
            self._series_column()
        over_time = [self.over_time] if self.over_time is not None else []
        super().__init__(
            [self.header, *merge, toolbar, self.compare_summary, self.diagnostics_summary, body, *over_time]
        )
        self.add_class("ms-checkpoint-browser")
        if net is not None:
            self.compare_with(net)

    # ---- actions ----
    def compare_with(self, net: Any) -> CompareReport:
        """Colour rows by ``compare(checkpoint, net)``; missing parameters appear as extra rows."""
        report = net if isinstance(net, CompareReport) else compare(self.checkpoint, net)
        self.report = report
        self._report_rows = {row.name: row for row in report.rows}
        for row in report.rows:
            if row.status == "missing" and row.name not in self._names and row.name not in self._missing:
                numel = 1
                for d in row.net_shape or ():
                    numel *= d
                info = MissingParam(row.name, tuple(row.net_shape or ()), str(row.net_dtype), numel)
                self._missing[row.name] = info
                self.model._insert(info)
        counts = report.counts
        self.compare_summary.value = (
            '<div class="ms-compare-summary">Network compare: '
            + " · ".join(f"<b>{v}</b> {k.replace('_', ' ')}" for k, v in counts.items())
            + "</div>"
        )
        self.only_problems.disabled = False
        self._apply_statuses()
        return report

    def _series_column(self) -> None:
        """A "Δ first" column: each weight's relative L2 change from the first checkpoint to the last."""
        table = self.series.change()
        last = table[table.path == self.checkpoint.path]
        self.model.values["change_first"] = {
            row.name: "–" if row.change_first != row.change_first else f"{row.change_first:.3g}"
            for row in last.itertuples()
        }
        self.tree.add_columns([Column("change_first", "Δ first", "number")])

    def show_diagnostics(self, max_size: int | None = None) -> Any:
        """Compute ``checkpoint.diagnostics()`` and show α, stable rank and σ max as tree columns; layers
        outside healthy ranges are marked (under-trained: α > 6, over-trained: α < 2, not finite).
        Returns the DataFrame."""
        df = self.checkpoint.diagnostics(max_size=max_size)
        self.diagnostics_table = df

        def text(value: float) -> str:
            return "–" if value != value else f"{value:.3g}"

        for column in ("alpha", "stable_rank", "spectral_norm"):
            self.model.values[column] = {row.name: text(getattr(row, column)) for row in df.itertuples()}
        known = {c.key for c in self.model.columns}
        self.tree.add_columns([c for c in DIAGNOSTIC_COLUMNS if c.key not in known])
        self._diagnostic_statuses = {
            row.name: DIAGNOSTIC_STATUSES[row.status]
            for row in df.itertuples()
            if row.status in DIAGNOSTIC_STATUSES
        }
        counts = df.status.value_counts().to_dict()
        parts = [f"<b>{len(df)}</b> layers"] + [
            f"<b>{n}</b> {html.escape(status)}" for status, n in counts.items() if status != "ok"
        ]
        self.diagnostics_summary.value = (
            '<div class="ms-compare-summary">Layer diagnostics: ' + " · ".join(parts)
            + ' <span style="color:var(--jp-ui-font-color2,#616161)">(α from the eigenvalues of WᵀW: '
            "2–6 well trained, &gt; 6 random-like, &lt; 2 over-fitted; heuristics)</span></div>"
        )
        self.diagnostics_button.disabled = True
        self._apply_statuses()
        self.refresh_static()
        return df

    def _diagnostics_clicked(self) -> None:
        with self.deferred_static():
            self.diagnostics_button.description = "Computing…"
            try:
                self.show_diagnostics()
            finally:
                self.diagnostics_button.description = "Layer diagnostics"

    def _apply_statuses(self) -> None:
        statuses = dict(self.report.statuses) if self.report else {}
        for name, status in self._diagnostic_statuses.items():  # compare problems first, then health
            if statuses.get(name) in (None, "matched"):
                statuses[name] = status
        for name, status in list(statuses.items()):  # mark the inner nodes that hold problems
            if status in PROBLEMS:
                prefix = ""
                for part in split_name(name)[:-1]:
                    prefix = f"{prefix}.{part}" if prefix else part
                    statuses.setdefault(prefix, "contains_problem")
        self.tree.set_statuses(statuses, PROBLEMS if self.only_problems.value else None)

    def _group(self, group: str, visible: bool) -> None:
        self.tree.set_group_visible(group, visible)

    def _expand(self, expand: bool) -> None:
        (self.model.expand_all if expand else self.model.collapse_all)()
        self.tree.refresh()

    def select(self, name: str) -> None:
        """Select ``name`` as a click would, and bring its row into view: its group shown, its ancestors
        expanded, a filter that hides it cleared (the saved copy shows it too)."""
        info = self.checkpoint._info_by_name.get(name) if hasattr(self.checkpoint, "_info_by_name") else None
        group = getattr(info, "group", "weights")
        toggle = {"optimizer": self.show_optimizer, "extra": self.show_extra}.get(group)
        if toggle is not None and not toggle.value:
            toggle.value = True  # its observer shows the group
        node = self.model.nodes.get(name)
        if node is not None and node.info is not None and not self.model.leaf_visible(node):
            self.model.set_filter("")
        self.model.reveal(name)
        self.tree.refresh()
        self.tree.select(name)
        self.refresh_static()

    def static_html(self) -> str:
        """Header, compare summary, the visible rows and the details pane, as plain HTML."""
        return (
            header_html(self.checkpoint) + self.compare_summary.value + self.diagnostics_summary.value
            + "<div style='display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start'>"
            f"<div style='flex:3 1 350px;min-width:0;overflow-x:auto'>{self.tree.static_html()}</div>"
            f"<div style='flex:2 1 200px;min-width:0'>{self.details.value}</div></div>"
            + (self._over_time_html() if self.over_time is not None else "")
        )

    def _over_time_html(self) -> str:
        from ms_notebook.widgets.series_view import over_time_section

        return over_time_section(self.over_time)

    def _show_details(self) -> None:
        name = self.tree.selected
        if not name:
            return
        if name in self._missing:
            m = self._missing[name]
            body = (
                f'<div class="ms-details"><div class="ms-details-title">{html.escape(name)}</div>'
                f'<div class="ms-bad">Missing from the checkpoint: the network expects '
                f"{'×'.join(map(str, m.shape)) or 'scalar'} {html.escape(m.dtype)}.</div></div>"
            )
        elif name in self._names:
            if self.over_time is not None:
                self.over_time.select(name)
            body = details_html(self.checkpoint, name, heatmap=self.heatmap.value)
            body += slices_html(self.checkpoint, name)
            row = self._report_rows.get(name)
            if row is not None and row.status != "matched":
                body = body.replace(
                    '<div class="ms-details-meta">',
                    f'<div class="ms-bad">{html.escape(row.status.replace("_", " "))}: '
                    f"{html.escape(row.note)}</div>"
                    '<div class="ms-details-meta">',
                    1,
                )
        else:
            node = self.model.nodes.get(name)
            n = len(self.model.visible_leaves(node)) if node else 0
            title = f'<div class="ms-details-title">{html.escape(name)}</div>'
            body = f'<div class="ms-details">{title}{n:,} tensors</div>'
        self.details.value = DETAILS_CSS + body


def browse(path_or_checkpoint: Any, net: Any = None) -> CheckpointBrowser:
    """Open a checkpoint (path, ``Checkpoint`` or ``CheckpointSeries``) in the browser widget; ``net`` adds
    the compare colours."""
    return CheckpointBrowser(path_or_checkpoint, net)


def checkpoint_mimebundle(checkpoint: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """What ``Checkpoint._repr_mimebundle_`` returns: the browser widget, with the text summary as plain text.

    Outside a Jupyter kernel (a terminal IPython, a script) only the text summary is returned.
    """
    text = repr(checkpoint)
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None:
            return {"text/plain": text}
        bundle = CheckpointBrowser(checkpoint)._repr_mimebundle_(include=include, exclude=exclude)
    except Exception:  # never let a display hook break printing a checkpoint
        return {"text/plain": text}
    bundle = dict(bundle or {})
    bundle["text/plain"] = text
    return bundle
