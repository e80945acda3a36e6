"""Discriminative learning rates: one rate per block, spread geometrically, as MindSpore parameter groups.

fastai's ``lr=slice(lo, hi)``: the first block trains at ``lo``, the last at ``hi``, the blocks between at
rates spaced evenly on a log scale; ``slice(hi)`` trains the last block at ``hi`` and every other at
``hi / 10``; a number trains everything at that rate. Rates are spread over *all* blocks of the network,
frozen or not, so a block's rate does not depend on what else is frozen.

MindSpore's optimizers take the rates as parameter groups (``[{"params": [...], "lr": r}, ...]``). In a plain
parameter list MindSpore skips weight decay for parameters named ``beta`` or ``gamma`` (normalisation layers);
in groups it does not, so each block's ``beta``/``gamma`` parameters get a group of their own with
``weight_decay=0.0``: grouping changes the rates and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _positive(value: Any, what: str) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def block_rates(lr: float | slice, n_blocks: int) -> list[float]:
    """The learning rate of each of ``n_blocks`` blocks, first to last, rounded to 12 significant digits
    (``0.02``, not ``0.020000000000000004`` from the geometric spread: generated code and tables print it)."""
    return [_round(rate) for rate in _block_rates(lr, n_blocks)]


def _round(rate: float) -> float:
    return float(f"{rate:.12g}")


def _block_rates(lr: float | slice, n_blocks: int) -> list[float]:
    if n_blocks < 1:
        return []
    if isinstance(lr, slice):
        if lr.step is not None:
            raise ValueError(f"lr=slice(lo, hi) takes no step, got {lr!r}")
        hi = _positive(lr.stop, "the top learning rate (slice stop)")
        if lr.start is None:  # fastai's slice(hi): hi for the last block, hi / 10 for the others
            return [hi / 10.0] * (n_blocks - 1) + [hi]
        lo = _positive(lr.start, "the bottom learning rate (slice start)")
        if lo > hi:
            raise ValueError(f"lr=slice(lo, hi) needs lo <= hi, got {lr!r}")
        if n_blocks == 1:
            return [hi]
        ratio = math.log(hi / lo) / (n_blocks - 1)
        return [lo * math.exp(ratio * i) for i in range(n_blocks)]
    return [_positive(lr, "lr")] * n_blocks


def _no_decay(name: str) -> bool:
    # MindSpore's own rule for plain parameter lists (nn.Optimizer's decay_filter)
    return "beta" in name or "gamma" in name


def group_spec(blocks: Sequence[tuple[str, Sequence[str]]], trainable: Sequence[str],
               lr: float | slice) -> list[dict[str, Any]]:
    """Parameter groups by name: ``[{"block", "lr", "names", ["weight_decay"]}]``, trainable names only.

    ``blocks`` are ``(block, parameter names)`` in network order. Groups without a trainable name are left
    out.
    """
    rates = block_rates(lr, len(blocks))
    wanted = set(trainable)
    groups = []
    for (block, names), rate in zip(blocks, rates, strict=True):
        mine = [n for n in names if n in wanted]
        decay = [n for n in mine if not _no_decay(n)]
        no_decay = [n for n in mine if _no_decay(n)]
        if decay:
            groups.append({"block": block, "lr": rate, "names": decay})
        if no_decay:
            groups.append({"block": block, "lr": rate, "weight_decay": 0.0, "names": no_decay})
    return groups


def parameter_groups(spec: Sequence[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """MindSpore parameter groups from ``group_spec`` output and a name -> Parameter mapping."""
    out = []
    for group in spec:
        entry: dict[str, Any] = {"params": [params[n] for n in group["names"]], "lr": group["lr"]}
        if "weight_decay" in group:
            entry["weight_decay"] = group["weight_decay"]
        out.append(entry)
    return out


def describe(lr: float | slice | None) -> str:
    """``'slice(1e-04, 1e-02)'``-style text of a learning-rate argument."""
    if lr is None:
        return "the optimizer's own"
    if isinstance(lr, slice):
        return f"slice({lr.start:.3g}, {lr.stop:.3g})" if lr.start is not None else f"slice({lr.stop:.3g})"
    return f"{lr:.3g}"
