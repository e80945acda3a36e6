"""JSON payloads the server sends about a checkpoint: plain functions over the index, bounded in size.

A checkpoint can hold a million tensors, so nothing here returns them all at once: the entry list is paged
(``offset``/``limit``, in the tree's natural order) and filtered (``checkpoint.filters``, and by group), and
the tree is cut at ``depth`` levels and ``max_children`` children per node and ``MAX_TREE_NODES`` nodes in
all, each cut node saying how many children it left out. Every function is linear in the entries it looks
at and never recurses over name depth.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import numpy as np

from ms_notebook.checkpoint import Checkpoint, Node
from ms_notebook.checkpoint.filters import FilterError, select
from ms_notebook.checkpoint.sets import describe_set, describe_slices

MAX_LIMIT = 5000
PREVIEW_VALUES = 16
PREVIEW_MAX_BYTES = 4 << 20
MAX_BINS = 200
MAX_TREE_NODES = 2000


def _finite(value: float) -> float | None:
    """JSON has no NaN/Inf: send them as null."""
    return value if math.isfinite(value) else None


def _groups(ck: Checkpoint) -> dict[str, dict[str, int]]:
    groups: dict[str, dict[str, int]] = {}
    for info in ck.entries:
        g = groups.setdefault(info.group, {"tensors": 0, "values": 0, "bytes": 0})
        g["tensors"] += 1
        g["values"] += info.numel
        g["bytes"] += info.nbytes
    return groups


def _one(node: Node) -> dict[str, Any]:
    out = node.summary()
    if node.children:
        out["children"] = []
        out["more_children"] = len(node.children)
    return out


def _cut_tree(root: Node, depth: int, max_children: int, max_nodes: int = MAX_TREE_NODES) -> dict[str, Any]:
    """The tree breadth first: upper levels are complete before deeper ones spend the node budget."""
    top = _one(root)
    queue: deque[tuple[Node, dict[str, Any], int]] = deque([(root, top, depth)])
    budget = max_nodes - 1
    while queue:
        node, out, left = queue.popleft()
        if left <= 0 or not node.children:
            continue
        for child in islice(node.children.values(), max_children):
            if budget <= 0:
                return top
            budget -= 1
            child_out = _one(child)
            out["children"].append(child_out)
            out["more_children"] -= 1
            queue.append((child, child_out, left - 1))
    return top


def checkpoint_summary(
    ck: Checkpoint,
    api_path: str,
    *,
    prefix: str = "",
    depth: int = 1,
    max_children: int = 200,
    filter: str = "",
    groups: str = "",
    offset: int = 0,
    limit: int = 1000,
) -> dict[str, Any]:
    """Header, groups, a cut tree under ``prefix`` and one page of the entries that match ``filter``.

    ``filter`` follows ``checkpoint.filters`` (the syntax of the notebook widgets); ``groups`` is a comma list
    of the groups to page through (empty: all). ``filter_matches`` counts the matches per group before the
    group cut, so a view can say what its hidden groups hold; a bad filter pages nothing and says why in
    ``filter_error``.
    """
    limit = max(0, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    root = ck.tree()
    node = root[prefix] if prefix else root  # KeyError for an unknown prefix
    matching, filter_error, matches = _filtered(ck, filter, groups)
    page = matching[offset : offset + limit]
    return {
        "path": api_path,
        "name": os.path.basename(api_path),
        "format": ck.format,
        "file_size": ck.file_size,
        "num_tensors": len(ck),
        "num_params": ck.num_params,
        "has_crc": ck.has_crc,
        "set": describe_set(ck),
        "groups": _groups(ck),
        "tree": _cut_tree(node, max(0, depth), max(1, max_children)),
        "entries": {
            "columns": ["name", "shape", "dtype", "group", "numel", "nbytes"],
            "rows": [[i.name, list(i.shape), i.dtype, i.group, i.numel, i.nbytes] for i in page],
            "total": len(matching),
            "offset": offset,
            "limit": limit,
        },
        "filter_matches": matches,
        "filter_error": filter_error,
    }


def _filtered(ck: Checkpoint, text: str, groups: str) -> tuple[list[Any], str, dict[str, int]]:
    """Entries matching ``text`` in the wanted ``groups`` (in the tree's order), the filter's error text and
    matches per group."""
    try:
        matching = select(ck.tree_order(), text)
    except FilterError as exc:
        return [], str(exc), {}
    matches: dict[str, int] = {}
    for info in matching:
        matches[info.group] = matches.get(info.group, 0) + 1
    wanted = {g.strip() for g in groups.split(",") if g.strip()}
    if wanted:
        matching = [info for info in matching if info.group in wanted]
    return matching, "", matches


def _shown(value: float) -> float | str:
    """A preview value for JSON: NaN and ±Inf as the strings "NaN", "Infinity", "-Infinity", told apart."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def _json_values(flat: np.ndarray) -> list[Any]:
    if flat.dtype.kind == "c":
        return [[_shown(float(v.real)), _shown(float(v.imag))] for v in flat]
    if flat.dtype.kind == "b":
        return [bool(v) for v in flat]
    if flat.dtype.kind in "iu":
        return [int(v) for v in flat]
    with np.errstate(all="ignore"):
        return [_shown(float(v)) for v in flat.astype(np.float64)]


def _preview(ck: Checkpoint, name: str) -> list[Any] | str | None:
    """The first values (reads only those), or the start of a string; None for what cannot be shown."""
    info = ck.info(name)
    if info.kind == "maptensor":
        return None
    if info.kind == "str":
        return ck[name][:500] if info.nbytes <= PREVIEW_MAX_BYTES else None
    return _json_values(ck.preview(name, PREVIEW_VALUES))


def tensor_detail(
    ck: Checkpoint, name: str, bins: int = 40, cancelled: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """One entry's metadata, statistics, histogram counts and first few values (KeyError if absent).

    Statistics and histogram come from ``Checkpoint.describe``: one pass, cached per file stamp, tensor
    and bins (shared with the notebook widget in the same process). ``cancelled`` stops the pass.
    """
    info = ck.info(name)
    bins = max(1, min(bins, MAX_BINS))
    out: dict[str, Any] = {
        "name": info.name,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "group": info.group,
        "kind": info.kind,
        "numel": info.numel,
        "nbytes": info.nbytes,
        "stats": None,
        "histogram": None,
        "preview": _preview(ck, name),
        "note": "",
        "slices": describe_slices(ck, name),
    }
    if info.kind != "tensor":
        out["note"] = f"a {info.kind} value has no statistics"
        return out
    summary = ck.describe(name, bins, cancelled)
    stats = summary.stats
    out["stats"] = {k: (_finite(v) if isinstance(v, float) else v) for k, v in stats.to_dict().items()}
    if stats.count > stats.nan_count + stats.inf_count:
        out["histogram"] = {
            "counts": [int(c) for c in summary.counts],
            "edges": [_finite(float(e)) for e in summary.edges],
            "exact": summary.exact,
        }
    elif stats.count:
        out["note"] = "no finite values: nothing to draw"
    return out
