"""JSON payloads the server sends about a checkpoint: plain functions over the index, bounded in size.

A checkpoint can hold tens of thousands of tensors, so nothing here returns them all at once: the entry list
is paged (``offset``/``limit``) and filtered by substring, and the tree is cut at ``depth`` levels and
``max_children`` children per node and ``MAX_TREE_NODES`` nodes in all, each cut node saying how many
children it left out.
"""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Any

from ms_notebook.checkpoint import Checkpoint, Node

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
    out: dict[str, Any] = {
        "name": node.name,
        "path": node.path,
        "tensors": node.tensors,
        "parameters": node.parameters,
        "bytes": node.bytes,
    }
    if node.info is not None:
        out.update(shape=list(node.info.shape), dtype=node.info.dtype, group=node.info.group)
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
        for child in list(node.children.values())[:max_children]:
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
    offset: int = 0,
    limit: int = 1000,
) -> dict[str, Any]:
    """Header, groups, a cut tree under ``prefix`` and one page of entries whose names contain ``filter``."""
    limit = max(0, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    root = ck.tree()
    node = root[prefix] if prefix else root  # KeyError for an unknown prefix
    needle = filter.lower()
    matching = [info for info in ck.entries if needle in info.name.lower()] if needle else ck.entries
    page = matching[offset : offset + limit]
    return {
        "path": api_path,
        "name": os.path.basename(api_path),
        "format": ck.format,
        "file_size": ck.file_size,
        "num_tensors": len(ck),
        "num_params": ck.num_params,
        "has_crc": ck.has_crc,
        "groups": _groups(ck),
        "tree": _cut_tree(node, max(0, depth), max(1, max_children)),
        "entries": {
            "columns": ["name", "shape", "dtype", "group", "numel", "nbytes"],
            "rows": [[i.name, list(i.shape), i.dtype, i.group, i.numel, i.nbytes] for i in page],
            "total": len(matching),
            "offset": offset,
            "limit": limit,
        },
    }


def _preview(ck: Checkpoint, name: str) -> list[Any] | str | None:
    info = ck.info(name)
    if info.kind == "maptensor" or info.nbytes > PREVIEW_MAX_BYTES:
        return None
    value = ck[name]
    if isinstance(value, str):
        return value[:500]
    flat = value.reshape(-1)[:PREVIEW_VALUES]
    if flat.dtype.kind == "c":
        return [[_finite(float(v.real)), _finite(float(v.imag))] for v in flat]
    if flat.dtype.kind == "b":
        return [bool(v) for v in flat]
    return [_finite(float(v)) for v in flat]


def tensor_detail(ck: Checkpoint, name: str, bins: int = 40) -> dict[str, Any]:
    """One entry's metadata, statistics, histogram counts and first few values (KeyError if absent)."""
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
    }
    if info.kind != "tensor":
        out["note"] = f"a {info.kind} value has no statistics"
        return out
    try:
        stats = ck.stats(name)
    except TypeError as exc:
        out["note"] = str(exc)
        return out
    out["stats"] = {k: (_finite(v) if isinstance(v, float) else v) for k, v in stats.to_dict().items()}
    if stats.count:
        counts, edges = ck.histogram(name, bins=bins, range=(stats.min, stats.max))
        out["histogram"] = {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]}
    return out
