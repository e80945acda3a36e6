"""TransferReport: what ``TransferPlan.apply()`` did, as a table (DataFrame, HTML, text)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

_STATUS = {"match": "match", "shape_mismatch": "shape mismatch", "absent": "absent in checkpoint"}


@dataclass
class TransferReport:
    """Per-parameter outcome: loaded or skipped (with reason), frozen or trainable; plus the optimizer.

    ``optimizer`` is the optimizer the plan built over the trainable parameters (``None`` without a factory);
    ``optimizer_state`` lists each optimizer state entry as loaded, dropped (with reason) or kept;
    ``param_groups`` the optimizer's parameter groups when ``apply(lr=...)`` gave one rate per block
    (``block``, ``lr``, ``tensors``, ``weight_decay``).
    """

    rows: list[dict[str, Any]]
    optimizer: Any = None
    optimizer_state: list[dict[str, str]] = field(default_factory=list)
    frozen_batchnorm: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    param_groups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def loaded(self) -> list[str]:
        return [r["name"] for r in self.rows if r["reload"]]

    @property
    def skipped(self) -> dict[str, str]:
        """Name -> reason: ``shape mismatch: checkpoint (10, 64) vs network (5, 64)``, ``not selected``…"""
        out = {}
        for r in self.rows:
            if r["reload"]:
                continue
            if r["status"] == "shape_mismatch":
                out[r["name"]] = f"shape mismatch: checkpoint {r['checkpoint_shape']} vs network {r['shape']}"
            elif r["status"] == "absent":
                out[r["name"]] = "absent from checkpoint"
            else:
                out[r["name"]] = "not selected"
        return out

    @property
    def frozen(self) -> list[str]:
        return [r["name"] for r in self.rows if r["frozen"]]

    @property
    def trainable(self) -> list[str]:
        return [r["name"] for r in self.rows if r["trainable"]]

    @property
    def trainable_count(self) -> int:
        """Number of trainable scalar parameters after the transfer."""
        return sum(r["numel"] for r in self.rows if r["trainable"])

    @property
    def state_loaded(self) -> list[str]:
        return [s["name"] for s in self.optimizer_state if s["action"] == "loaded"]

    @property
    def state_dropped(self) -> dict[str, str]:
        return {s["name"]: s["reason"] for s in self.optimizer_state if s["action"] == "dropped"}

    def _table(self) -> list[dict[str, Any]]:
        skipped = self.skipped
        state_by_param: dict[str, list[str]] = {}
        for s in self.optimizer_state:
            target = s["name"].partition(".")[2]
            if s["action"] in ("loaded", "dropped"):
                state_by_param.setdefault(target, []).append(f"{s['name'].split('.')[0]} {s['action']}")
        return [
            {
                "name": r["name"],
                "shape": r["shape"],
                "checkpoint shape": r["checkpoint_shape"],
                "status": _STATUS.get(r["status"], r["status"]),
                "action": "loaded" if r["reload"] else "skipped",
                "reason": "" if r["reload"] else skipped[r["name"]],
                "training": "trainable" if r["trainable"] else ("frozen" if r["frozen"] else "not trainable"),
                "optimizer state": ", ".join(state_by_param.get(r["name"], [])),
                "params": r["numel"],
            }
            for r in self.rows
        ]

    def to_dataframe(self):
        """The table as a pandas DataFrame, one row per network parameter."""
        import pandas as pd

        return pd.DataFrame(self._table())

    def headline(self) -> str:
        s = self.summary
        text = (
            f"{len(self.loaded)} loaded, {len(self.skipped)} skipped; "
            f"{s.get('params_trainable', 0):,} trainable "
            f"parameters, {s.get('params_frozen', 0):,} frozen ({s.get('percent_frozen', 0.0):.1f}%)"
        )
        if self.frozen_batchnorm:
            text += f"; BatchNorm statistics fixed in {', '.join(self.frozen_batchnorm)}"
        if self.optimizer is not None:
            dropped = self.state_dropped
            text += (
                f"; optimizer {type(self.optimizer).__name__}: {len(self.state_loaded)} state entries loaded"
            )
            if dropped:
                more = "…" if len(dropped) > 4 else ""
                text += f", {len(dropped)} dropped ({', '.join(sorted(dropped)[:4])}{more})"
        if self.param_groups:
            rates = [g["lr"] for g in self.param_groups]
            blocks = len(dict.fromkeys(g["block"] for g in self.param_groups))
            text += (
                f"; learning rates {min(rates):.3g} … {max(rates):.3g} over {blocks} blocks "
                f"({len(self.param_groups)} parameter groups)"
            )
        return text

    def __repr__(self) -> str:
        table = self._table()
        cols = ["name", "shape", "status", "action", "reason", "training"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in table)) if table else len(c) for c in cols}
        lines = ["TransferReport: " + self.headline(), "  ".join(c.ljust(widths[c]) for c in cols)]
        lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in table]
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        table = self._table()
        cols = list(table[0]) if table else []
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = []
        for r in table:
            cls = "skipped" if r["action"] == "skipped" else "loaded"
            cells = "".join(_cell(c, r[c]) for c in cols)
            body.append(f"<tr class='ms-transfer-{cls}'>{cells}</tr>")
        # Words are never broken: every cell stays on one line, long names and reasons end in "…" with the
        # full text on hover, and a table wider than the output scrolls sideways.
        style = (
            "<style>.ms-transfer-report table{font-size:90%;border-collapse:collapse}"  # 11.7 px in Lab
            ".ms-transfer-report .ms-transfer-scroll{overflow-x:auto;max-width:100%}"
            # inside a widget's flex box the report must not grow to the table's width: it scrolls instead
            ":has(> .ms-transfer-report){min-width:0;max-width:100%}"
            ".ms-transfer-report td,.ms-transfer-report th{white-space:nowrap;padding:1px 6px 1px 3px;"
            "text-align:left;vertical-align:top}"
            ".ms-transfer-report td.ms-cut{max-width:16em;overflow:hidden;text-overflow:ellipsis}"
            ".ms-transfer-report td:last-child{text-align:right}"
            ".ms-transfer-report tr.ms-transfer-skipped td{color:var(--jp-warn-color0,#e65100)}</style>"
        )
        return (
            f"<div class='ms-transfer-report'>{style}"
            f"<p><b>TransferReport</b>: {html.escape(self.headline())}</p>"
            f"<div class='ms-transfer-scroll ms-scroll-x'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div></div>"
        )


_LONG = ("name", "reason", "optimizer state")  # columns cut with "…" past 16em, the full text on hover


def _cell(column: str, value: Any) -> str:
    text = html.escape(str(value))
    if column in _LONG and text:
        return f"<td class='ms-cut' title='{text}'>{text}</td>"
    return f"<td>{text}</td>"
