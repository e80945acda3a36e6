"""compare(checkpoint, net): what ``mindspore.load_param_into_net`` would do, without loading any tensor.

The network is duck-typed (no MindSpore import): anything with ``parameters_and_names()`` yielding parameters
with ``.shape`` and ``.dtype`` (a ``mindspore.nn.Cell``), or a plain mapping ``{name: (shape, dtype)}``.

Rules, mirrored from ``load_param_into_net`` (MindSpore 2.10, ``strict_load=False``) with exact-name matching:
- a network parameter whose name is in the checkpoint: ``matched``; different shape: ``shape_mismatch``
  (MindSpore raises RuntimeError), except the case MindSpore reshapes silently (checkpoint shape = network
  shape + trailing 1s); different dtype: ``dtype_mismatch``, with ``converts=True`` when MindSpore converts
  silently (both floating or both signed integer types) and False when it raises;
- a network parameter absent from the checkpoint: ``missing`` (MindSpore skips ``accu_grads.*`` and so do we);
- a checkpoint weight no network parameter asks for: ``unexpected``. Optimizer state and appended extra
  values are never reported as unexpected (they are listed as ``ignored``).
MindSpore's prefix fallback (loading ``prefix.x`` into a missing ``x``) is not applied: it can load optimizer
moments into weights, so a name that only matches that way is reported as missing. A *consistent* prefix is
another matter: a checkpoint saved inside a wrapper cell names every weight ``backbone.x``. ``compare``
detects such a prefix between the checkpoint's weights and the network (``suggested_prefix_map``) and matches
through it when asked: ``compare(ck, net, prefix_map={"backbone.": ""})`` or ``prefix_map="auto"``
(:mod:`ms_notebook.checkpoint.prefix`, the rule ``TransferPlan`` uses too).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import pandas as pd

from .prefix import PrefixMap, count_matches, detect_prefix

STATUSES = ("matched", "missing", "unexpected", "shape_mismatch", "dtype_mismatch")
PROBLEMS = frozenset({"missing", "unexpected", "shape_mismatch", "dtype_mismatch"})
_FLOATS = frozenset({"float16", "float32", "float64", "bfloat16"})
_INTS = frozenset({"int8", "int16", "int32", "int64"})


@dataclass(frozen=True)
class CompareRow:
    """One name: its status and what the checkpoint and the network say about it."""

    name: str
    status: str
    ckpt_shape: tuple[int, ...] | None
    net_shape: tuple[int, ...] | None
    ckpt_dtype: str | None
    net_dtype: str | None
    note: str = ""
    converts: bool = False
    ckpt_name: str | None = None  # the checkpoint's name when a prefix map makes it differ from ``name``


@dataclass
class CompareReport:
    """Outcome of :func:`compare`: one row per name, counts, a DataFrame and the list of ignored entries."""

    rows: list[CompareRow]
    ignored: list[str] = field(default_factory=list)
    prefix_map: dict[str, str] = field(default_factory=dict)  # the map matching went through
    suggested_prefix_map: dict[str, str] | None = None  # a consistent prefix found but not applied
    suggested_matches: int = 0  # how many network names the suggested map would find

    def prefix_text(self) -> str:
        """One sentence on the prefix map applied or suggested ('' when there is none)."""
        if self.prefix_map:
            return f"names matched through prefix_map={self.prefix_map!r}"
        if self.suggested_prefix_map:
            return (
                f"the names differ by a consistent prefix: prefix_map={self.suggested_prefix_map!r} "
                f"matches {self.suggested_matches} network parameters"
            )
        return ""

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.rows)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """True when load_param_into_net would load every parameter without error or conversion."""
        return not any(r.status in PROBLEMS for r in self.rows)

    def names(self, status: str) -> list[str]:
        return [r.name for r in self.rows if r.status == status]

    @property
    def statuses(self) -> dict[str, str]:
        return {r.name: r.status for r in self.rows}

    @property
    def problems(self) -> list[CompareRow]:
        return [r for r in self.rows if r.status in PROBLEMS]

    def would_raise(self) -> bool:
        """True when load_param_into_net raises (a shape mismatch or a dtype it cannot convert)."""
        return any(
            r.status == "shape_mismatch" or (r.status == "dtype_mismatch" and not r.converts)
            for r in self.rows
        )

    def to_dataframe(self) -> pd.DataFrame:
        cols = ["name", "status", "ckpt_shape", "net_shape", "ckpt_dtype", "net_dtype", "note"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.rows], columns=cols)

    def __repr__(self) -> str:
        parts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v)
        lines = [f"CompareReport({parts or 'empty'})"]
        if self.prefix_text():
            lines.append(f"  {self.prefix_text()}")
        lines += [f"  {r.status:15s} {r.name}  {r.note}".rstrip() for r in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  … {len(self.problems) - 20} more problems")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        df = self.to_dataframe()
        df = df[df.status != "matched"] if len(df[df.status != "matched"]) else df
        counts = " · ".join(f"<b>{v}</b> {k.replace('_', ' ')}" for k, v in self.counts.items())
        prefix = f"<p>{html.escape(self.prefix_text())}</p>" if self.prefix_text() else ""
        return f"<div><p>{counts}</p>{prefix}{df.to_html(index=False, max_rows=200)}</div>"


def _canon_dtype(dtype: Any) -> str:
    """'Float32', mindspore.float32, np.float32, 'float32' -> 'float32'."""
    text = getattr(dtype, "name", None) if not isinstance(dtype, str) else dtype
    if not isinstance(text, str) or not text:
        text = str(dtype)
    text = text.lower().removeprefix("mindspore.")
    return {"bool_": "bool"}.get(text, text)


def _net_params(net: Any) -> list[tuple[str, tuple[int, ...], str]]:
    if isinstance(net, Mapping):
        return [(str(name), tuple(int(d) for d in shape), str(dtype)) for name, (shape, dtype) in net.items()]
    if not hasattr(net, "parameters_and_names"):
        raise TypeError(
            "compare(checkpoint, net): net must have parameters_and_names() (a mindspore.nn.Cell) "
            f"or be a mapping {{name: (shape, dtype)}}, got {type(net).__name__}"
        )
    out = []
    for name, param in net.parameters_and_names():
        pname = getattr(param, "name", None) or name  # MindSpore matches on param.name
        out.append((str(pname), tuple(int(d) for d in param.shape), str(param.dtype)))
    return out


def _entries(checkpoint: Any) -> Iterable[Any]:
    if isinstance(checkpoint, str | PathLike):
        from ms_notebook.checkpoint import open_checkpoint

        checkpoint = open_checkpoint(checkpoint)
    return checkpoint.entries


def compare(checkpoint: Any, net: Any, prefix_map: Mapping[str, str] | str | None = None) -> CompareReport:
    """What ``load_param_into_net(net, load_checkpoint(checkpoint))`` would do, from the index alone.

    ``prefix_map`` (``{checkpoint prefix: network prefix}``, or ``"auto"`` for the detected one) matches names
    that differ by a consistent prefix; without it names match exactly and a detected prefix is only
    suggested.
    """
    ckpt = {e.name: e for e in _entries(checkpoint)}
    params = _net_params(net)
    weights = [name for name, e in ckpt.items() if getattr(e, "group", "weights") == "weights"]
    detected = detect_prefix(weights, [name for name, _, _ in params])
    if isinstance(prefix_map, str):
        if prefix_map != "auto":
            raise ValueError(f"prefix_map must be a dict, 'auto' or None, got {prefix_map!r}")
        prefix_map = detected or {}
    mapper = PrefixMap(prefix_map)
    rows: list[CompareRow] = []
    seen: set[str] = set()
    used: set[str] = set()
    for name, shape, dtype in params:
        if name in seen:
            continue
        seen.add(name)
        ck_name = mapper.to_checkpoint(name)
        used.add(ck_name)
        e = ckpt.get(ck_name)
        if e is None:
            if not name.startswith("accu_grads"):
                note = "not in the checkpoint" + (f" (as {ck_name})" if ck_name != name else "")
                rows.append(CompareRow(name, "missing", None, shape, None, dtype, note))
            continue
        rows.append(_row(name, e, shape, dtype, ck_name if ck_name != name else None))
    ignored = []
    for name, e in ckpt.items():
        if name in used:
            continue
        if getattr(e, "group", "weights") != "weights":
            ignored.append(name)
        else:
            rows.append(
                CompareRow(name, "unexpected", tuple(e.shape), None, str(e.dtype), None, "not in the network")
            )
    report = CompareReport(rows, ignored, prefix_map=dict(mapper.mapping))
    if detected and not mapper:
        report.suggested_prefix_map = detected
        report.suggested_matches = count_matches(PrefixMap(detected), weights, [n for n, _, _ in params])
    return report


def _row(name: str, e: Any, shape: tuple[int, ...], dtype: str, ck_name: str | None) -> CompareRow:
    """The status of network parameter ``name`` against checkpoint entry ``e``."""
    cshape, cdtype = tuple(int(d) for d in e.shape), str(e.dtype)
    if cshape != shape:
        extra = cshape[len(shape) :]
        if len(cshape) > len(shape) and all(d == 1 for d in extra) and _numel(cshape) == _numel(shape):
            note = "reshaped (trailing 1s dropped)"
            return CompareRow(name, "matched", cshape, shape, cdtype, dtype, note, ckpt_name=ck_name)
        note = f"{cshape} vs net {shape}"
        return CompareRow(name, "shape_mismatch", cshape, shape, cdtype, dtype, note, ckpt_name=ck_name)
    a, b = _canon_dtype(cdtype), _canon_dtype(dtype)
    if a != b:
        converts = {a, b} <= _FLOATS or {a, b} <= _INTS
        note = f"converted {cdtype} → {dtype}" if converts else f"{cdtype} cannot load into {dtype}"
        return CompareRow(name, "dtype_mismatch", cshape, shape, cdtype, dtype, note, converts, ck_name)
    return CompareRow(name, "matched", cshape, shape, cdtype, dtype, ckpt_name=ck_name)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
