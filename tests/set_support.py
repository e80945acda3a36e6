"""Build checkpoint sets as MindSpore lays them out, offline (semi-auto parallel refuses CPU).

Slices are cut with MindSpore's own code (``mindspore.parallel._tensor``: ``_load_tensor``, the
optimizer-shard and nested-map layouts its transform uses), files written with ``mindspore.save_checkpoint``
and strategy files with ``mindspore.train.node_strategy_pb2`` (or MindSpore's JSON form). Uneven
(``param_split_shape``) and ``field`` slices have no MindSpore slicer: they are cut as
``merge_sliced_parameter`` puts them back together.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np


@dataclass
class L:
    """One parameter's layout, as the strategy file stores it."""

    dev_matrix: list[int]
    tensor_map: list
    opt_step: int = 0
    opt_size: int = 0
    split: list[int] = field(default_factory=list)  # param_split_shape
    offsets: list[int] = field(default_factory=list)  # indices_offset
    field: int = 0

    @property
    def devices(self) -> int:
        return int(np.prod(self.dev_matrix))


def write_strategy(path: Path, layouts: dict[str, L], form: str = "protobuf") -> Path:
    """The strategy file MindSpore writes (protobuf ``ParallelStrategyMap``) or its JSON form."""
    if form == "json":
        items = {
            name: {
                "dev_matrix": lay.dev_matrix,
                "tensor_map": lay.tensor_map,
                "param_split_shape": lay.split,
                "indices_offset": lay.offsets,
                "field": lay.field,
                "opt_weight_shard_step": lay.opt_step,
                "opt_weight_shard_size": lay.opt_size,
            }
            for name, lay in layouts.items()
        }
        path.write_text(json.dumps({"current_stage": 0, "parallel_layout_item": items}))
        return path
    from mindspore.train import node_strategy_pb2 as pb

    m = pb.ParallelStrategyMap()
    m.current_stage = 0
    for name, lay in layouts.items():
        item = m.parallel_layout_item.add()
        item.param_name = name
        out = item.parallel_layouts
        out.dev_matrix.add().dim.extend(lay.dev_matrix)
        if any(isinstance(d, list | tuple) for d in lay.tensor_map):
            for d in lay.tensor_map:  # a nested map: one TensorMap per tensor dim
                out.tensor_map.add().dim.extend(list(d) if isinstance(d, list | tuple) else [d])
        else:
            out.tensor_map.add().dim.extend(lay.tensor_map)
        out.param_split_shape.add().dim.extend(lay.split)
        out.indices_offset.add().dim.extend(lay.offsets)
        out.field = lay.field
        out.opt_weight_shard_step = lay.opt_step
        out.opt_weight_shard_size = lay.opt_size
    path.write_bytes(m.SerializeToString())
    return path


def rank_slice(full: np.ndarray, lay: L, rank: int) -> np.ndarray:
    """The slice rank ``rank`` stores of ``full`` under layout ``l``."""
    import mindspore as ms
    from mindspore.parallel import _tensor as T

    local = rank % lay.devices
    if lay.field:
        d, f = lay.devices, lay.field
        rows = full.shape[0] // (d * f)
        blocks = [full[k * d * rows + local * rows : k * d * rows + (local + 1) * rows] for k in range(f)]
        return np.ascontiguousarray(np.concatenate(blocks))
    if lay.split:
        cuts = T._get_tensor_strategy(lay.dev_matrix, lay.tensor_map)
        index = int(T._get_tensor_slice_index(lay.dev_matrix, cuts, lay.tensor_map, local))
        inner = int(np.prod(cuts)) // cuts[0]
        c0 = index // inner
        start = sum(lay.split[k * inner] for k in range(c0))
        part = full[start : start + lay.split[index]]
        for axis in range(1, full.ndim):
            n = cuts[axis]
            coord = (index // int(np.prod(cuts[axis + 1 :]))) % n
            part = np.split(part, n, axis=axis)[coord]
        return np.ascontiguousarray(part)
    tensor = ms.Tensor(full)
    nested = any(isinstance(d, list | tuple) for d in lay.tensor_map)
    cuts = T._get_tensor_strategy(lay.dev_matrix, lay.tensor_map)
    shape = [s // c for s, c in zip(full.shape, cuts, strict=True)]
    if lay.opt_size and lay.opt_step:
        dev, tmap, rshape = T._construct_tensor_layout_for_opt_shard(
            list(lay.dev_matrix), list(lay.tensor_map), lay.opt_step, lay.opt_size, list(full.shape)
        )
        item = [lay.dev_matrix, lay.tensor_map, [], 0, lay.opt_step, lay.opt_size]
        shape[0] //= T._extract_layout_item(item)[3]
        out = T._load_tensor(tensor, dev, tmap, full_shape=rshape, rank_id=local)
    elif nested:
        dev, tmap, rshape = T._expand_layout(list(lay.dev_matrix), list(lay.tensor_map), list(full.shape))
        out = T._load_tensor(tensor, dev, tmap, full_shape=rshape, rank_id=local)
    else:
        out = T._load_tensor(tensor, lay.dev_matrix, lay.tensor_map, rank_id=local)
    return np.ascontiguousarray(out.reshape(shape))


def save(path: Path, values: dict[str, np.ndarray], fmt: str = "ckpt") -> Path:
    """``mindspore.save_checkpoint`` of named arrays (bfloat16 included)."""
    import mindspore as ms

    data = [{"name": k, "data": ms.Tensor(v)} for k, v in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o600)
        path.unlink()
    ms.save_checkpoint(data, str(path), format=fmt)
    return path


def write_rank_set(
    folder: Path,
    fulls: dict[str, np.ndarray],
    layouts: dict[str, L],
    *,
    ranks: int,
    fmt: str = "ckpt",
    extra: dict[str, np.ndarray] | None = None,
    stem: str = "net-1_4",
    strategy_form: str | None = "protobuf",
    omit: frozenset[str] = frozenset(),
) -> Path:
    """``folder/rank_N/<stem>.<fmt>`` for every rank and ``folder/strategy.ckpt`` (or ``.json``).

    A name in ``fulls`` without a layout, and every ``extra`` value, is stored whole on every rank; names in
    ``omit`` are cut by their layout but left out of the strategy file (as optimizer state can be).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for rank in range(ranks):
        values = {}
        for name, full in fulls.items():
            lay = layouts.get(name)
            values[name] = rank_slice(full, lay, rank) if lay is not None else full
        values.update(extra or {})
        save(folder / f"rank_{rank}" / f"{stem}.{fmt}", values, fmt)
    if strategy_form:
        name = "strategy.json" if strategy_form == "json" else "strategy.ckpt"
        kept = {n: lay for n, lay in layouts.items() if n in fulls and n not in omit}
        write_strategy(folder / name, kept, strategy_form)
    return folder


def rich_set() -> tuple[dict[str, np.ndarray], dict[str, L]]:
    """Values and layouts of an 8-rank (2 data-parallel × 4 model-parallel) run covering every cut: rows,
    columns, both, nested maps, optimizer sharding, replicated parameters, optimizer moments and bfloat16."""
    rng = np.random.default_rng(7)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    fulls = {
        "embed.weight": r(16, 6),  # rows, by the model-parallel dim
        "dense.weight": r(6, 16),  # columns
        "block.weight": r(8, 8),  # rows and columns
        "nested.weight": r(8, 4),  # rows by two device dims
        "sharded.weight": r(16, 8),  # columns, then rows by optimizer sharding
        "norm.gamma": r(6),  # replicated
        "half.weight": r(8, 8).astype(ml_dtypes.bfloat16),  # rows, bfloat16
        "moment1.embed.weight": r(16, 6),  # optimizer state named in the strategy
        "moment2.embed.weight": r(16, 6),  # optimizer state the strategy leaves out
    }
    layouts = {
        "embed.weight": L([2, 4], [0, -1]),
        "dense.weight": L([2, 4], [-1, 0]),
        "block.weight": L([2, 2, 2], [1, 0]),
        "nested.weight": L([2, 2, 2], [[1, 0], -1]),
        "sharded.weight": L([2, 4], [-1, 0], opt_step=4, opt_size=2),
        "norm.gamma": L([2, 4], [-1]),
        "half.weight": L([2, 4], [0, -1]),
        "moment1.embed.weight": L([2, 4], [0, -1]),
        "moment2.embed.weight": L([2, 4], [0, -1]),  # written as cut, left out of the strategy (OMIT)
    }
    return fulls, layouts


OMIT = frozenset({"moment2.embed.weight"})


EXTRA = {"global_step": np.array([12], np.int32), "learning_rate": np.array(0.01, np.float32)}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype size and bytes."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype.itemsize == b.dtype.itemsize and a.tobytes() == b.tobytes()


def rank_file(folder: Path, rank: int) -> str:
    files = sorted(os.listdir(folder / f"rank_{rank}"))
    return str(folder / f"rank_{rank}" / files[-1])
