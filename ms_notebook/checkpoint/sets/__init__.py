"""Checkpoint sets: one checkpoint stored as several files, read as one index (no MindSpore, no widgets).

- ``shards``: ``*.safetensors.index.json`` + shards, or a folder of ``name-0000i-of-0000N.safetensors``;
- ``ranks``: ``rank_N/`` folders of a distributed run + the parallel strategy file (protobuf or JSON);
- ``unified``: MindFormers' ``param_name_map.json`` + ``partK.safetensors`` + ``hyper_param.safetensors``.

``detect`` tells them apart from the content; ``open_set`` answers with a :class:`CheckpointSet`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import CheckpointError
from .checkpoint_set import CheckpointSet, ReplicaCheck
from .model import Holder, RankFile, Slice
from .ranks import rank_dirs, read_rank_set
from .shards import INDEX_SUFFIX, UNIFIED_MAP, find_index, read_index_file, read_shard_folder, shard_files
from .strategy import Layout, Strategy, read_strategy

__all__ = [
    "INDEX_SUFFIX",
    "UNIFIED_MAP",
    "CheckpointSet",
    "Holder",
    "Layout",
    "RankFile",
    "ReplicaCheck",
    "Slice",
    "Strategy",
    "describe_set",
    "describe_slices",
    "detect",
    "is_set_path",
    "open_set",
    "read_strategy",
]


def is_set_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a set rather than a single file: a folder, or a ``.json`` index."""
    path = os.fspath(path)
    return os.path.isdir(path) or path.endswith(".json")


def detect(path: str | os.PathLike[str]) -> str:
    """``"ranks"``, ``"index"`` (a folder with an index, or the index file) or ``"shards"``; CheckpointError
    for a folder or JSON file that is none of them."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if rank_dirs(path):
            return "ranks"
        if find_index(path) is not None:
            return "index"
        if shard_files(path):
            return "shards"
        raise CheckpointError(
            path,
            "is a folder but not a checkpoint set: no rank_N/ folders, no *.safetensors.index.json or "
            "param_name_map.json, no .safetensors shards",
        )
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return "index"


def open_set(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    strategy: str | os.PathLike[str] | Sequence[str] | None = None,
    step: int | str | None = None,
    file: str | None = None,
) -> CheckpointSet:
    """Open a folder or index file as one :class:`CheckpointSet` (kind detected from the content)."""
    path = os.path.abspath(os.fspath(path))
    kind = detect(path)
    if kind != "ranks" and (strategy is not None or step is not None or file is not None):
        raise ValueError("strategy=, step= and file= apply to folders of rank_N/ files")
    if kind == "ranks":
        raw, info = read_rank_set(path, strategy=strategy, format=format, step=step, file=file)
    elif kind == "index":
        index = find_index(path) if os.path.isdir(path) else path
        assert index is not None
        raw, info = read_index_file(index)
    else:
        raw, info = read_shard_folder(path)
    return CheckpointSet.build(path, raw, info)


def describe_set(ck: object) -> dict[str, object] | None:
    """A JSON-ready summary of a set (None for a single file): kind, notes, files, strategy, ranks."""
    if not isinstance(ck, CheckpointSet):
        return None
    root = ck.root

    def rel(p: str) -> str:
        return os.path.relpath(p, root)

    return {
        "kind": ck.kind,
        "files": len(ck.files),
        "notes": list(ck.notes),
        "strategy": [rel(p) for p in ck.strategy],
        "ranks": {str(r): rel(f.file) for r, f in ck.rank_files.items()},
        "replicas": None if ck.replicas is None else ck.replicas.describe(),
    }


def describe_slices(ck: object, name: str) -> list[dict[str, object]] | None:
    """Which box of ``name`` each rank (or shard) holds, JSON-ready; None for a single file."""
    if not isinstance(ck, CheckpointSet):
        return None
    root = ck.root
    return [
        {
            "box": [list(r) for r in s.box],
            "ranks": s.ranks,
            "file": os.path.relpath(s.holders[0].file, root),
            "text": s.describe(root),
        }
        for s in ck.slices(name)
    ]
