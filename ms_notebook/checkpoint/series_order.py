"""The order of a run's checkpoint files, read from the names MindSpore and the Runner give them.

- ``ModelCheckpoint`` writes ``PREFIX-EPOCH_STEP.ckpt`` (``STEP`` counts steps *within* the epoch) and, when
  files of that prefix already exist in the folder, starts a new run under ``PREFIX_N`` (``net_1-1_5.ckpt``):
  such a file belongs to run N, after run N−1. A word after the step (``-2_8_breakpoint.ckpt``, ``_r``) keeps
  the file beside the plain one of that step, after it.
- The Runner writes ``epoch_N``, ``last`` and ``best``; ``epoch_N`` sorts by N, ``last``/``best`` by the step
  stored in them (else after everything else).
- ``.safetensors`` files follow the same rules. Files of different prefixes (different runs in one folder) are
  kept together by prefix.

The global step of a file is the one stored in it when it holds one (``step_num`` from ``append_info``, the
Runner's ``step``, the optimizer's ``global_step``), else ``(epoch − 1) × steps_per_epoch + STEP`` with
``steps_per_epoch`` the largest in-epoch step any name of that run shows (exact when the run saved an
epoch's last step, as ``ModelCheckpoint`` does at the end of training).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

SUFFIXES = (".ckpt", ".safetensors")
# bounded, non-nested patterns on a file name (at most 255 bytes): no catastrophic backtracking
_EPOCH_STEP = re.compile(
    r"^(?P<prefix>.*)-(?P<epoch>\d{1,9})_(?P<step>\d{1,12})(?:_(?P<tag>[A-Za-z]\w{0,63}))?$"
)
_EPOCH_N = re.compile(r"^(?:(?P<prefix>.*)[-_.])?epoch[-_]?(?P<epoch>\d{1,9})$")
_RUN = re.compile(r"^(?P<base>.+)_(?P<run>\d{1,6})$")
_NAMED = {"best": 0, "last": 1}  # at the same step: best before last


@dataclass(frozen=True)
class NameParts:
    """What a file's name says: its prefix, run, epoch, in-epoch step and trailing word (None when absent)."""

    prefix: str
    epoch: int | None = None
    step_in_epoch: int | None = None
    tag: str | None = None
    named: str | None = None  # "best", "last" or another stem without numbers
    run: int = 0


def stem(path: str) -> str:
    """The file name without its checkpoint suffix."""
    name = os.path.basename(path)
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_name(path: str) -> NameParts:
    """Split a checkpoint file's name into the parts ordering uses (run is filled in by ``parse_names``)."""
    s = stem(path)
    m = _EPOCH_STEP.match(s)
    if m:
        return NameParts(m["prefix"], int(m["epoch"]), int(m["step"]), m["tag"])
    m = _EPOCH_N.match(s)
    if m:
        return NameParts(m["prefix"] or "", int(m["epoch"]))
    return NameParts("", named=s)


def parse_names(paths: list[str]) -> list[NameParts]:
    """``parse_name`` for every path, with runs: prefix ``P_N`` is run N of ``P`` when ``P`` is one too."""
    parts = [parse_name(p) for p in paths]
    prefixes = {p.prefix for p in parts if p.epoch is not None}
    out = []
    for p in parts:
        m = _RUN.match(p.prefix) if p.prefix else None
        if m and m["base"] in prefixes:
            p = NameParts(m["base"], p.epoch, p.step_in_epoch, p.tag, p.named, int(m["run"]))
        out.append(p)
    return out


def steps_per_epoch(parts: list[NameParts]) -> dict[tuple[str, int], int]:
    """Per (prefix, run): the largest in-epoch step its names show (the epoch length when an epoch's last
    step was saved)."""
    out: dict[tuple[str, int], int] = {}
    for p in parts:
        if p.step_in_epoch is not None:
            key = (p.prefix, p.run)
            out[key] = max(out.get(key, 0), p.step_in_epoch)
    return out


def name_step(p: NameParts, per_epoch: dict[tuple[str, int], int]) -> int | None:
    """The global step a name implies, or None when it implies none."""
    if p.epoch is None:
        return None
    spe = per_epoch.get((p.prefix, p.run))
    if p.step_in_epoch is None:  # epoch_N: the end of epoch N
        return p.epoch * spe if spe else None
    if p.epoch == 1:
        return p.step_in_epoch
    return (p.epoch - 1) * spe + p.step_in_epoch if spe else None


def sort_key(p: NameParts, stored_step: int | None, mtime_ns: int) -> tuple:
    """Order: run, prefix, then epoch and in-epoch step from the name, then the stored step, then the time;
    names without an epoch (``best``, ``last``) after, by stored step."""
    if p.epoch is not None:
        within = p.step_in_epoch if p.step_in_epoch is not None else math.inf
        tag = 0 if p.tag is None else 1
        return (p.run, 0, p.prefix, p.epoch, within, tag, p.tag or "", stored_step or 0, mtime_ns)
    step = stored_step if stored_step is not None else math.inf
    return (p.run, 1, step, _NAMED.get(p.named or "", 2), 0, 0, p.named or "", 0, mtime_ns)
