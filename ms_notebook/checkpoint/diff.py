"""diff(a, b): what changed between two checkpoints ("what did fine-tuning actually move?").

Per tensor present in both with the same shape: relative L2 change ``‖b − a‖ / ‖a‖`` (``inf`` when ``a`` is
all zeros and ``b`` is not), computed in bounded chunks of the flattened tensors in float64, so a 1 GB tensor
never needs 1 GB of extra memory. Also: tensors added (only in ``b``), removed (only in ``a``) and shape
changes. Strings are compared for equality.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from ms_notebook.checkpoint.dtypes import numpy_dtype

CHUNK_ELEMENTS = 1 << 20  # 1 Mi elements per chunk: 8 MiB per float64 chunk


@dataclass(frozen=True)
class DiffRow:
    """One name: ``status`` is changed, unchanged, added, removed, shape_changed or dtype_changed."""

    name: str
    status: str
    group: str
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    rel_change: float = math.nan
    l2_a: float = math.nan
    max_abs_change: float = math.nan


@dataclass
class DiffReport:
    rows: list[DiffRow]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per name, sorted by relative change (largest first; added/removed/shape changes after)."""
        cols = ["name", "status", "group", "shape_a", "shape_b", "rel_change", "l2_a", "max_abs_change"]
        df = pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.rows], columns=cols)
        return df.sort_values("rel_change", ascending=False, na_position="last", kind="stable").reset_index(
            drop=True
        )

    def names(self, status: str) -> list[str]:
        return [r.name for r in self.rows if r.status == status]

    @property
    def added(self) -> list[str]:
        return self.names("added")

    @property
    def removed(self) -> list[str]:
        return self.names("removed")

    @property
    def shape_changed(self) -> list[str]:
        return self.names("shape_changed")

    def change(self, name: str) -> float:
        return next(r.rel_change for r in self.rows if r.name == name)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        lines = ["DiffReport(" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")"]
        top = self.to_dataframe().head(10)
        lines += [
            f"  {row.rel_change:10.3e}  {row.name}"
            for row in top.itertuples()
            if not math.isnan(row.rel_change)
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        df = self.to_dataframe()
        finite = df.rel_change.replace([np.inf], np.nan)
        top = float(finite.max()) if finite.notna().any() else 0.0
        rows = []
        for r in df.head(200).itertuples():
            value = r.rel_change
            width = 0 if not np.isfinite(value) or top <= 0 else max(1, int(100 * value / top))
            bar = f'<div style="background:var(--jp-brand-color1,#1976d2);height:8px;width:{width}px"></div>'
            shown = "" if math.isnan(value) else f"{value:.3e}"
            rows.append(f"<tr><td>{r.name}</td><td>{r.status}</td><td>{shown}</td><td>{bar}</td></tr>")
        head = "<tr><th>name</th><th>status</th><th>relative L2 change</th><th></th></tr>"
        return f"<table>{head}{''.join(rows)}</table>"


def _open(x: Any) -> Any:
    if isinstance(x, str | PathLike):
        from ms_notebook.checkpoint import open_checkpoint

        return open_checkpoint(x)
    return x


def _chunks(ck: Any, name: str, chunk: int) -> Iterator[np.ndarray]:
    """Flat pieces of tensor ``name`` in C order: read bounded chunk by chunk from an index Checkpoint."""
    entry = getattr(ck, "_by_name", {}).get(name)
    dtype = numpy_dtype(getattr(entry, "ms_dtype", "")) if entry is not None else None
    if dtype is not None and getattr(entry, "kind", "tensor") == "tensor" and hasattr(ck, "iter_chunks"):
        yield from ck.iter_chunks(name, chunk)
        return
    flat = np.asarray(ck[name]).reshape(-1)
    for start in range(0, flat.size, chunk):
        yield flat[start : start + chunk]


def relative_change(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> tuple[float, float, float]:
    """(‖b − a‖/‖a‖, ‖a‖, max |b − a|) over two sequences of aligned flat chunks, accumulated in float64."""
    sa = sd = mx = 0.0
    for ca, cb in zip(a, b, strict=True):
        kind = np.complex128 if np.iscomplexobj(ca) or np.iscomplexobj(cb) else np.float64
        xa, xb = ca.astype(kind), cb.astype(kind)  # copies: the reader reuses its buffer
        d = np.abs(xb - xa)
        sa += float(np.sum(np.abs(xa) ** 2))
        sd += float(np.sum(d**2))
        if d.size:
            mx = max(mx, float(np.max(d)))
    na, nd = math.sqrt(sa), math.sqrt(sd)
    rel = nd / na if na > 0 else (0.0 if nd == 0 else math.inf)
    return rel, na, mx


def diff(a: Any, b: Any) -> DiffReport:
    """Compare checkpoint ``a`` (before) with ``b`` (after); paths or opened Checkpoints."""
    ca, cb = _open(a), _open(b)
    ea = {e.name: e for e in ca.entries}
    eb = {e.name: e for e in cb.entries}
    rows: list[DiffRow] = []
    for name, x in ea.items():
        group = getattr(x, "group", "weights")
        y = eb.get(name)
        sa = tuple(x.shape)
        if y is None:
            rows.append(DiffRow(name, "removed", group, sa, None))
            continue
        sb = tuple(y.shape)
        if sa != sb:
            rows.append(DiffRow(name, "shape_changed", group, sa, sb))
            continue
        if str(x.dtype) == "str" or str(y.dtype) == "str":
            same = ca[name] == cb[name]
            rows.append(
                DiffRow(name, "unchanged" if same else "changed", group, sa, sb, 0.0 if same else math.inf)
            )
            continue
        rel, na, mx = relative_change(_chunks(ca, name, CHUNK_ELEMENTS), _chunks(cb, name, CHUNK_ELEMENTS))
        status = "changed" if mx > 0 else "unchanged"
        if str(x.dtype) != str(y.dtype):
            status = "dtype_changed"
        rows.append(DiffRow(name, status, group, sa, sb, rel, na, mx))
    for name, y in eb.items():
        if name not in ea:
            rows.append(DiffRow(name, "added", getattr(y, "group", "weights"), None, tuple(y.shape)))
    return DiffReport(rows)
