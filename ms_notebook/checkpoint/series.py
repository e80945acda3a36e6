"""``open_series``: a run's checkpoints over time as one object, read tensor by tensor in bounded chunks.

A series is an ordered list of opened checkpoints (see ``series_order`` for the order and the step of each).
Per tensor and checkpoint it gives the figures ``describe`` computes (``stats()``), the relative L2 change
``‖x_t − x_ref‖ / ‖x_ref‖`` from the previous checkpoint and from the first (``change()``), the first
checkpoint where each tensor holds a NaN or Inf (``first_nonfinite()``), the same per block
(``block_change()``), a tensor's histogram over time (``histograms()``) and per-layer diagnostics over time
(``diagnostics()``).

One pass reads a tensor of one checkpoint once: a value of up to ``HOLD`` elements is read whole and kept
(as float64) while the next checkpoint is compared with it; a larger one is streamed chunk by chunk beside
the same chunks of the previous and first checkpoints (bounded memory, three positioned reads per chunk).
Results are cached for the process per (file stamp, tensor) and per (stamp, stamp, tensor): asking again,
or opening the series again, reads nothing, and a rewritten file is never answered from the cache.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import reader
from .blocks import name_blocks
from .dtypes import numpy_dtype
from .errors import Cancelled, CheckpointError
from .index import Checkpoint, open_checkpoint
from .series_order import SUFFIXES, name_step, parse_names, sort_key, steps_per_epoch
from .stats import TensorStats, compute_histogram, summarize
from .summaries import SummaryCache

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

HOLD = reader.CHUNK_ELEMENTS  # values up to this many elements are read whole and held between checkpoints
CHUNK = reader.CHUNK_ELEMENTS  # elements per chunk of a streamed value
STEP_NAMES = ("step_num", "step", "cur_step_num", "global_step")  # where a file may store its global step
Progress = Callable[[float, str], None]
_STAT_FIELDS = ("count", "mean", "std", "min", "max", "mean_abs", "zero_fraction", "nan_count", "inf_count")


@dataclass(frozen=True, slots=True)
class _Figures:
    """One tensor of one checkpoint: its statistics and its L2 norm (of the finite values)."""

    stats: TensorStats
    l2: float


@dataclass(frozen=True, slots=True)
class _Change:
    """‖b − a‖² and ‖a‖² (float64 sums) of one tensor between two checkpoints."""

    diff_sq: float
    ref_sq: float

    @property
    def relative(self) -> float:
        if self.ref_sq > 0:
            return math.sqrt(self.diff_sq / self.ref_sq)
        if math.isnan(self.diff_sq):
            return math.nan
        return 0.0 if self.diff_sq == 0 else math.inf


FIGURES = SummaryCache(1 << 18)  # (file stamps, name) -> _Figures
CHANGES = SummaryCache(1 << 18)  # (stamps a, stamps b, name) -> _Change
HISTOGRAMS = SummaryCache(1 << 12)  # (file stamps, name, bins, range) -> counts


def _stamps(ck: Checkpoint, name: str) -> tuple:
    return ck._entry_stamps(ck._by_name[name])


def _as_float(x: np.ndarray) -> np.ndarray:
    """float64 (complex128 for complex) copy of a raw chunk: the reader reuses its buffer."""
    if np.iscomplexobj(x):
        return x.astype(np.complex128)
    return x.astype(np.float64)


class _Aligned:
    """Take exactly ``n`` values at a time from a stream of flat chunks (the streams of one tensor in two
    files may be cut differently when one of them is assembled from slices)."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self._it = chunks
        self._buf = np.empty(0)

    def take(self, n: int) -> np.ndarray:
        parts, have = [self._buf], self._buf.size
        while have < n:
            nxt = next(self._it, None)
            if nxt is None:
                break
            parts.append(_as_float(nxt))
            have += nxt.size
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._buf = joined[n:]
        return joined[:n]


def _sq(x: np.ndarray) -> float:
    """Σ|x|² in float64 by einsum's own loop, not BLAS (its threads cost more than a small sum). Callers
    silence floating-point warnings (``_one``: once per tensor, not per sum)."""
    if np.iscomplexobj(x):
        return float(np.sum(np.abs(x) ** 2))
    return float(np.einsum("i,i->", x, x))


def _finite_sq(x: np.ndarray) -> float:
    finite = np.isfinite(x)
    return _sq(x if finite.all() else x[finite])


class CheckpointSeries:
    """Checkpoints of one run in training order: ``len``, ``series[i]`` (a Checkpoint), ``steps``, ``paths``.

    Build with :func:`open_series`. Every table method reads in bounded chunks and caches its figures.
    """

    def __init__(self, checkpoints: Sequence[Checkpoint], steps: Sequence[int | None]) -> None:
        if len(checkpoints) != len(steps):
            raise ValueError("one step per checkpoint")
        self.checkpoints: list[Checkpoint] = list(checkpoints)
        # a checkpoint without a known step is numbered by its place, so every row has one
        self.steps: list[int] = [s if s is not None else i for i, s in enumerate(steps)]
        self.steps_known: bool = all(s is not None for s in steps)
        self.paths: list[str] = [ck.path for ck in self.checkpoints]

    # -- sequence protocol --
    def __len__(self) -> int:
        return len(self.checkpoints)

    def __getitem__(self, i: int) -> Checkpoint:
        return self.checkpoints[i]

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self.checkpoints)

    def __repr__(self) -> str:
        first = os.path.basename(self.paths[0]) if self.paths else ""
        last = os.path.basename(self.paths[-1]) if self.paths else ""
        steps = f"steps {self.steps[0]}…{self.steps[-1]}" if self.steps else "no steps"
        return f"<CheckpointSeries {len(self)} checkpoints, {steps} ({first} … {last})>"

    def to_dataframe(self) -> pd.DataFrame:
        """One row per checkpoint: ``step``, ``path``, ``tensors``, ``file_size``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "step": self.steps,
                "path": self.paths,
                "tensors": [len(ck) for ck in self.checkpoints],
                "file_size": [ck.file_size for ck in self.checkpoints],
            }
        )

    # -- which tensors --
    def names(self, group: str | None = "weights") -> list[str]:
        """Numeric tensors of ``group`` (None: every group) in any checkpoint, in tree order as first seen."""
        seen: dict[str, None] = {}
        for ck in self.checkpoints:
            for info in ck.tree_order():
                if info.kind != "tensor" or numpy_dtype(info.dtype) is None:
                    continue
                if group is None or info.group == group:
                    seen.setdefault(info.name, None)
        return list(seen)

    def _select(self, names: str | Sequence[str] | None, group: str | None) -> list[str]:
        if names is None:
            return self.names(group)
        return [names] if isinstance(names, str) else list(names)

    # -- the pass --
    def _ensure(
        self, names: list[str], changes: bool, progress: Progress | None, cancelled: Callable[[], bool] | None
    ) -> None:
        """Compute (or find cached) the figures of ``names`` in every checkpoint, and their changes."""
        total = max(1, len(names) * len(self))
        done = 0
        for name in names:
            first: tuple[Checkpoint, np.ndarray | None] | None = None
            prev: tuple[Checkpoint, np.ndarray | None] | None = None
            shape = None
            for ck in self.checkpoints:
                if cancelled is not None and cancelled():
                    raise Cancelled
                info = ck._info_by_name.get(name)
                if info is None or info.kind != "tensor" or numpy_dtype(info.dtype) is None:
                    prev = None
                    done += 1
                    continue
                if first is not None and info.shape != shape:
                    first = prev = None  # a new shape: changes start again from here
                shape = info.shape
                refs = [r for r in (prev, first) if r is not None] if changes else []
                held = self._one(ck, name, refs)
                here = (ck, held)
                if first is None:
                    first = here
                prev = here
                done += 1
                if progress is not None:
                    progress(done / total, name)

    def _one(
        self, ck: Checkpoint, name: str, refs: list[tuple[Checkpoint, np.ndarray | None]]
    ) -> np.ndarray | None:
        """Figures of ``name`` in ``ck`` and its changes from each of ``refs``; returns the value as float64
        when it is small enough to hold for the next checkpoint (else None)."""
        with np.errstate(all="ignore"):  # NaN and Inf are counted, not warned about
            return self._compute(ck, name, refs)

    def _compute(
        self, ck: Checkpoint, name: str, refs: list[tuple[Checkpoint, np.ndarray | None]]
    ) -> np.ndarray | None:
        stamps = _stamps(ck, name)
        fig_key = (stamps, name)
        todo = []
        for ref_ck, ref_val in refs:
            key = (_stamps(ref_ck, name), stamps, name)
            if key[0] != stamps and CHANGES.get(key) is None and all(k != key for k, *_ in todo):
                todo.append((key, ref_ck, ref_val))
        info = ck.info(name)
        small = info.numel <= HOLD
        if FIGURES.get(fig_key) is not None and not todo:
            return None  # all known: nothing is read (the next checkpoint reads this one only if it must)
        entry, dtype = ck._numeric(name)
        if small:
            raw = reader.read_value(ck.path, entry, dtype, ck._stamps).reshape(-1)
            if FIGURES.get(fig_key) is None:
                stats = summarize([raw], dtype, 1, None, info.numel)[0]
                x = _as_float(raw)
                FIGURES.put(fig_key, _Figures(stats, math.sqrt(_finite_sq(x))))
            else:
                x = _as_float(raw)
            for key, ref_ck, ref_val in todo:
                if ref_val is None:
                    ref_val = _as_float(ref_ck[name]).reshape(-1)
                CHANGES.put(key, _Change(_sq(x - ref_val), _sq(ref_val)))
            return x
        # large: one streamed pass over this file, the references' chunks read beside it
        sums = [[0.0, 0.0] for _ in todo]
        streams = [_Aligned(ref_ck.iter_chunks(name, CHUNK)) for _, ref_ck, _ in todo]
        l2 = [0.0]

        def tee() -> Iterator[np.ndarray]:
            for chunk in ck.iter_chunks(name, CHUNK):
                x = _as_float(chunk)
                l2[0] += _finite_sq(x)
                for s, stream in zip(sums, streams, strict=True):
                    a = stream.take(x.size)
                    s[0] += _sq(x - a)
                    s[1] += _sq(a)
                yield chunk

        stats = summarize(tee(), dtype, 1, None, info.numel)[0]
        if FIGURES.get(fig_key) is None:
            FIGURES.put(fig_key, _Figures(stats, math.sqrt(l2[0])))
        for (key, _, _), (d, r) in zip(todo, sums, strict=True):
            CHANGES.put(key, _Change(d, r))
        return None

    # -- tables --
    def stats(
        self,
        names: str | Sequence[str] | None = None,
        group: str | None = "weights",
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> pd.DataFrame:
        """One row per tensor and checkpoint: ``name``, ``step``, ``path`` and ``describe``'s figures
        (count, mean, std, min, max, mean_abs, zero_fraction, nan_count, inf_count) plus ``l2``."""
        import pandas as pd

        selected = self._select(names, group)
        self._ensure(selected, False, progress, cancelled)
        rows = []
        for name in selected:
            for step, ck in zip(self.steps, self.checkpoints, strict=True):
                if name not in ck._info_by_name:
                    continue
                fig = self._figures_of(ck, name)
                rows.append(
                    {"name": name, "step": step, "path": ck.path, **fig.stats.to_dict(), "l2": fig.l2}
                )
        cols = ["name", "step", "path", *_STAT_FIELDS, "l2"]
        return pd.DataFrame(rows, columns=cols)

    def _figures_of(self, ck: Checkpoint, name: str) -> _Figures:
        """``name``'s figures in ``ck``, from the cache (computed again if a huge series evicted them)."""
        key = (_stamps(ck, name), name)
        found = FIGURES.get(key)
        if found is None:
            self._one(ck, name, [])
            found = FIGURES.get(key)
        return found

    def _change_of(self, a: Checkpoint | None, b: Checkpoint, name: str) -> _Change | None:
        if a is None:
            return None
        sa, sb = _stamps(a, name), _stamps(b, name)
        if sa == sb:
            return _Change(0.0, 1.0)
        found = CHANGES.get((sa, sb, name))
        if found is None:
            self._one(b, name, [(a, None)])
            found = CHANGES.get((sa, sb, name))
        return found

    def _pairs(self, name: str) -> Iterator[tuple[int, Checkpoint, Checkpoint | None, Checkpoint | None]]:
        """(step, checkpoint, previous, first) for each checkpoint holding ``name``; previous and first are
        None where there is none of the same shape (a gap or a shape change restarts the comparison)."""
        first = prev = None
        shape = None
        for step, ck in zip(self.steps, self.checkpoints, strict=True):
            info = ck._info_by_name.get(name)
            if info is None:
                prev = None
                continue
            if first is not None and info.shape != shape:
                first = prev = None
            shape = info.shape
            yield step, ck, prev, first
            if first is None:
                first = ck
            prev = ck

    def change(
        self,
        names: str | Sequence[str] | None = None,
        group: str | None = "weights",
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> pd.DataFrame:
        """One row per tensor and checkpoint: ``name``, ``step``, ``path``, ``change_prev`` (‖x − x_prev‖ /
        ‖x_prev‖, NaN for the first checkpoint), ``change_first`` (‖x − x_first‖ / ‖x_first‖) and ``l2``.
        NaN where a value is not finite; inf where the reference is all zeros and the value is not."""
        import pandas as pd

        selected = self._select(names, group)
        self._ensure(selected, True, progress, cancelled)
        rows = []
        for name in selected:
            for step, ck, prev, first in self._pairs(name):
                cp = self._change_of(prev, ck, name)
                cf = self._change_of(first, ck, name) if first is not None else _Change(0.0, 1.0)
                fig = self._figures_of(ck, name)
                rows.append(
                    {
                        "name": name,
                        "step": step,
                        "path": ck.path,
                        "change_prev": cp.relative if cp is not None else math.nan,
                        "change_first": cf.relative if cf is not None else math.nan,
                        "l2": fig.l2 if fig is not None else math.nan,
                    }
                )
        return pd.DataFrame(rows, columns=["name", "step", "path", "change_prev", "change_first", "l2"])

    def first_nonfinite(
        self,
        names: str | Sequence[str] | None = None,
        group: str | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> pd.DataFrame:
        """One row per tensor that ever holds a NaN or Inf: ``name``, ``step``, ``path`` of the first
        checkpoint where it does, with that checkpoint's ``nan_count`` and ``inf_count``; sorted by step.
        Every numeric tensor is checked by default (optimizer state too: a NaN often shows there first)."""
        import pandas as pd

        table = self.stats(names, group, progress, cancelled)
        bad = table[(table.nan_count > 0) | (table.inf_count > 0)]
        first = bad.groupby("name", sort=False).head(1)
        out = first[["name", "step", "path", "nan_count", "inf_count"]].sort_values("step", kind="stable")
        return out.reset_index(drop=True) if len(out) else pd.DataFrame(columns=out.columns)

    def blocks(self, group: str | None = "weights") -> dict[str, list[str]]:
        """``{block: [names]}``: TransferPlan's block rule on the names (see ``checkpoint.blocks``)."""
        keep = set(self.names(group))
        infos: dict[str, Any] = {}
        for ck in self.checkpoints:
            for info in ck.tree_order():
                if info.name in keep:
                    infos.setdefault(info.name, info)
        return name_blocks(infos.values())

    def block_change(
        self,
        group: str | None = "weights",
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> pd.DataFrame:
        """One row per block and checkpoint: ``block``, ``step``, ``tensors``, ``change_prev`` and
        ``change_first`` of the block's values taken together (‖Δ‖ over all its tensors / ‖reference‖),
        ``l2`` and the block's ``nan_count`` and ``inf_count``."""
        import pandas as pd

        blocks = self.blocks(group)
        names = [n for members in blocks.values() for n in members]
        self._ensure(names, True, progress, cancelled)
        rows = []
        for block, members in blocks.items():
            acc: dict[int, dict[str, Any]] = {}
            for name in members:
                for step, ck, prev, first in self._pairs(name):
                    row = acc.setdefault(
                        step,
                        {
                            "block": block,
                            "step": step,
                            "tensors": 0,
                            "dp": 0.0,
                            "rp": 0.0,
                            "df": 0.0,
                            "rf": 0.0,
                            "sq": 0.0,
                            "nan_count": 0,
                            "inf_count": 0,
                            "has_prev": False,
                        },
                    )
                    row["tensors"] += 1
                    fig = self._figures_of(ck, name)
                    if fig is not None:
                        row["sq"] += fig.l2**2
                        row["nan_count"] += fig.stats.nan_count
                        row["inf_count"] += fig.stats.inf_count
                    cp = self._change_of(prev, ck, name)
                    if cp is not None:
                        row["dp"] += cp.diff_sq
                        row["rp"] += cp.ref_sq
                        row["has_prev"] = True
                    cf = self._change_of(first, ck, name) if first is not None else None
                    if cf is not None:
                        row["df"] += cf.diff_sq
                        row["rf"] += cf.ref_sq
            for row in acc.values():
                rows.append(
                    {
                        "block": block,
                        "step": row["step"],
                        "tensors": row["tensors"],
                        "change_prev": _Change(row["dp"], row["rp"]).relative
                        if row["has_prev"]
                        else math.nan,
                        "change_first": _Change(row["df"], row["rf"]).relative,
                        "l2": math.sqrt(row["sq"]),
                        "nan_count": row["nan_count"],
                        "inf_count": row["inf_count"],
                    }
                )
        cols = ["block", "step", "tensors", "change_prev", "change_first", "l2", "nan_count", "inf_count"]
        return pd.DataFrame(rows, columns=cols)

    def histograms(self, name: str, bins: int = 40) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """``(counts, edges, steps)``: a tensor's histogram in every checkpoint holding it, over one common
        range (the smallest min to the largest max of its finite values), ``counts[i]`` for ``steps[i]``."""
        table = self.stats(name)
        if not len(table):
            raise KeyError(name)
        lo, hi = float(table["min"].min()), float(table["max"].max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo, hi = 0.0, 1.0
        rows, steps = [], []
        edges = None
        for step, ck in zip(self.steps, self.checkpoints, strict=True):
            if name not in ck._info_by_name:
                continue
            key = (_stamps(ck, name), name, int(bins), lo, hi)
            found = HISTOGRAMS.get(key)
            if found is None:
                found = compute_histogram(ck.iter_chunks(name), int(bins), (lo, hi))
                HISTOGRAMS.put(key, found)
            counts, edges = found
            rows.append(counts)
            steps.append(step)
        return np.vstack(rows), edges, steps

    def diagnostics(self, names: Sequence[str] | None = None, **kwargs: Any) -> pd.DataFrame:
        """``Checkpoint.diagnostics()`` of every checkpoint, stacked with a ``step`` column (alpha per layer
        over time); keyword arguments go to :func:`ms_notebook.checkpoint.diagnostics.diagnostics`."""
        import pandas as pd

        from .diagnostics import diagnostics

        frames = []
        for step, ck in zip(self.steps, self.checkpoints, strict=True):
            df = diagnostics(ck, names=names, **kwargs)
            df.insert(1, "step", step)
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def plot(self, kind: str = "change", name: str | None = None, **kwargs: Any) -> Figure:
        """A matplotlib figure: ``"change"`` (layers × checkpoints heat map of relative change from the
        previous checkpoint), ``"histogram"`` (``name``'s distribution over steps, log counts) or
        ``"alpha"`` (per-layer alpha over steps). Sized to fit 1024×700 pixels at 100 dpi."""
        from .series_plot import plot_series

        return plot_series(self, kind, name, **kwargs)


# -- opening --------------------------------------------------------------------------------------------


def _stored_step(ck: Checkpoint) -> int | None:
    """The global step a checkpoint stores (``step_num``, the Runner's ``step``, ``global_step``), if any."""
    for key in STEP_NAMES:
        info = ck._info_by_name.get(key)
        if info is None or info.numel != 1 or info.kind != "tensor":
            continue
        dtype = numpy_dtype(info.dtype)
        if dtype is None or dtype.kind not in "iu":
            continue
        try:
            return int(np.asarray(ck[key]).reshape(-1)[0])
        except (CheckpointError, OSError, ValueError):
            return None
    return None


def _listing(folder: str) -> list[str]:
    """The checkpoint files right inside ``folder`` (temporaries and hidden files left out)."""
    out = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(".") or not name.endswith(SUFFIXES) or not os.path.isfile(path):
            continue
        out.append(path)
    return out


def _open_all(items: Sequence[Any], format: str | None) -> list[Checkpoint]:
    out = []
    for item in items:
        if isinstance(item, Checkpoint):
            out.append(item)
        elif isinstance(item, tuple):  # (rank folder, file name): one step of a distributed run
            out.append(open_checkpoint(item[0], format=format, file=item[1]))
        else:
            out.append(
                open_checkpoint(item, format=format) if os.path.isdir(item) else Checkpoint(item, format)
            )
    return out


def open_series(
    folder_or_paths: str | os.PathLike[str] | Sequence[Any],
    *,
    format: str | None = None,
    order: bool | None = None,
) -> CheckpointSeries:
    """Open a run's checkpoints as a :class:`CheckpointSeries`.

    ``folder_or_paths``: a folder (its ``.ckpt``/``.safetensors`` files; or, for a folder of ``rank_N/``
    folders, each file name of ``rank_0`` as one assembled set), a glob pattern, or a list of paths, folders
    (sets) and opened checkpoints. A folder or pattern is put in training order (``series_order``); a list
    keeps its order unless ``order=True``. Only headers are read (a saved index is reused).

    Raises CheckpointError naming the folder when it holds no checkpoint, and naming the file when one cannot
    be read.
    """
    items: list[Any]
    if isinstance(folder_or_paths, str | os.PathLike):
        where = os.fspath(folder_or_paths)
        if os.path.isdir(where):
            from .sets.ranks import rank_dirs

            ranks = rank_dirs(where)
            if ranks:
                rank0 = ranks[min(ranks)]
                items = [(where, os.path.basename(p)) for p in _listing(rank0)]
                keys = [os.path.join(rank0, f) for _, f in items]
            else:
                items = _listing(where)
                keys = list(items)
        elif any(c in where for c in "*?["):
            items = sorted(p for p in glob.glob(where) if p.endswith(SUFFIXES) and os.path.isfile(p))
            keys = list(items)
        else:
            raise CheckpointError(where, "is not a folder; give a folder, a glob pattern or a list of paths")
        if not items:
            raise CheckpointError(where, "holds no .ckpt or .safetensors file")
        order = True if order is None else order
    else:
        items = list(folder_or_paths)
        if not items:
            raise ValueError("open_series needs at least one checkpoint")
        keys = [
            it.path
            if isinstance(it, Checkpoint)
            else os.path.join(*it)
            if isinstance(it, tuple)
            else os.fspath(it)
            for it in items
        ]
        items = [it if isinstance(it, Checkpoint | tuple) else os.fspath(it) for it in items]
        order = bool(order)
    checkpoints = _open_all(items, format)
    parts = parse_names(keys)
    per_epoch = steps_per_epoch(parts)
    steps: list[int | None] = []
    for ck, p in zip(checkpoints, parts, strict=True):
        stored = _stored_step(ck)
        steps.append(stored if stored is not None else name_step(p, per_epoch))
    if order:
        mtimes = []
        for k in keys:
            try:
                mtimes.append(os.stat(k).st_mtime_ns)
            except OSError:
                mtimes.append(0)
        idx = sorted(range(len(checkpoints)), key=lambda i: sort_key(parts[i], steps[i], mtimes[i]))
        checkpoints = [checkpoints[i] for i in idx]
        steps = [steps[i] for i in idx]
    return CheckpointSeries(checkpoints, steps)
