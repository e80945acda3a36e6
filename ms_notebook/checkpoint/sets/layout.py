"""Where each rank's slice of a parameter lies in the full tensor, from its strategy layout.

The rules are MindSpore's own (``mindspore/parallel/_tensor.py``, the code its ``transform_checkpoints`` and
``merge_sliced_parameter`` run), re-derived here without MindSpore:

- ``tensor_map[i]`` names the device-matrix dim that cuts tensor dim ``i`` (``k`` means ``dev_matrix[-k-1]``;
  ``-1``: not cut; a tuple: cut by several device dims, outermost first). A rank's coordinate in the device
  matrix (C order, last dim fastest) picks its chunk along each cut dim.
- Optimizer-parallel sharding (``opt_weight_shard_size`` > 0) cuts dim 0 of the model-parallel slice further
  among ranks that hold the same slice; MindSpore describes this as a refined layout
  (``_construct_tensor_layout_for_opt_shard``) whose extra tensor dims all refine dim 0, and so do we.
- ``param_split_shape`` gives uneven dim-0 sizes, one per slice (slice index in C order over the cuts);
  ``indices_offset``, when present, must agree with their running sums.
- ``field`` > 0 (embedding tables with fields): rank ``j`` of ``D`` holds, for each of the ``field`` blocks of
  rows, the ``j``-th of ``D`` equal runs of rows, as ``_reshape_param_data_with_weight`` merges them.

``rank_boxes`` answers, for every rank of a stage, the boxes it holds, in the order their bytes appear in its
stored slice; ``full_shape`` recovers the full shape from a stored slice shape (the strategy stores neither).
"""

from __future__ import annotations

from ..formats import Box
from .strategy import Layout, MapDim


class LayoutError(ValueError):
    """The layout cannot describe a tensor of this shape (the caller names the file)."""


def _dev(dev_matrix: list[int], m: int) -> int:
    return dev_matrix[len(dev_matrix) - m - 1]


def tensor_strategy(dev_matrix: list[int] | tuple[int, ...], tensor_map: tuple[MapDim, ...]) -> list[int]:
    """How many chunks each tensor dim is cut into (MindSpore's ``_get_tensor_strategy``)."""
    dev = list(dev_matrix)
    out = []
    for dim in tensor_map:
        if isinstance(dim, tuple):
            n = 1
            for m in dim:
                if m != -1:
                    n *= _dev(dev, m)
            out.append(n)
        else:
            out.append(1 if dim == -1 else _dev(dev, dim))
    return out


def opt_shard_size(layout: Layout) -> int:
    """The optimizer-sharding factor, with ``-1`` resolved as MindSpore's ``_extract_layout_item`` does."""
    if layout.opt_size == -1:
        mp = 1
        for n in tensor_strategy(layout.dev_matrix, layout.tensor_map):
            mp *= n
        return layout.devices // mp
    return max(layout.opt_size, 0)


def full_shape(layout: Layout, slice_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The full shape from the shape one rank stores (an even split; uneven ones use ``split_shape``)."""
    if len(layout.tensor_map) != len(slice_shape):
        raise LayoutError(
            f"the strategy maps {len(layout.tensor_map)} dims but the stored slice has shape "
            f"{list(slice_shape)}"
        )
    if layout.field > 0:
        return (slice_shape[0] * layout.devices, *slice_shape[1:])
    cuts = tensor_strategy(layout.dev_matrix, layout.tensor_map)
    shape = [d * n for d, n in zip(slice_shape, cuts, strict=True)]
    if layout.split_shape:
        shape[0] = _uneven_dim0(layout, cuts)[1]
    elif shape and opt_shard_size(layout) > 0 and layout.opt_step:
        shape[0] *= opt_shard_size(layout)
    return tuple(shape)


def _uneven_dim0(layout: Layout, cuts: list[int]) -> tuple[list[int], int]:
    """Dim-0 start of each chunk index along dim 0, and the full dim 0, from ``param_split_shape``."""
    count = 1
    for n in cuts:
        count *= n
    sizes = layout.split_shape
    if len(sizes) != count:
        raise LayoutError(f"param_split_shape has {len(sizes)} sizes but the layout makes {count} slices")
    inner = count // cuts[0]  # slices sharing one dim-0 chunk index are consecutive in C order
    starts, pos = [], 0
    for c0 in range(cuts[0]):
        starts.append(pos)
        size = sizes[c0 * inner]
        if any(sizes[c0 * inner + k] != size for k in range(inner)):
            raise LayoutError(f"param_split_shape {list(sizes)} gives one dim-0 chunk several sizes")
        pos += size
    if layout.indices_offset and len(layout.indices_offset) == count:
        expected = [starts[s // inner] for s in range(count)]
        if list(layout.indices_offset) != expected:
            raise LayoutError(
                f"indices_offset {list(layout.indices_offset)} disagrees with param_split_shape {list(sizes)}"
            )
    return starts, pos


def _coordinate(rank: int, dev: list[int]) -> list[int]:
    coord = [0] * len(dev)
    for i in range(len(dev) - 1, -1, -1):
        coord[i] = rank % dev[i]
        rank //= dev[i]
    return coord


# -- MindSpore's refined layout for optimizer sharding and nested maps ------------------------------------


def _expand(
    dev: list[int], tmap: list[MapDim], shape: list[int], groups: list[int]
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Nested map dims become one refined dim per device dim (``_expand_layout``); groups track which
    tensor dim each refined dim belongs to."""
    new_map: list[int] = []
    new_shape: list[int] = []
    new_groups: list[int] = []
    for index, dim in enumerate(tmap):
        if isinstance(dim, tuple | list):
            accu = 1
            for m in dim[:-1]:
                new_map.append(m)
                new_shape.append(_dev(dev, m))
                new_groups.append(groups[index])
                accu *= _dev(dev, m)
            new_map.append(dim[-1])
            new_shape.append(shape[index] // accu)
            new_groups.append(groups[index])
        else:
            new_map.append(dim)
            new_shape.append(shape[index])
            new_groups.append(groups[index])
    return dev, new_map, new_shape, new_groups


def _opt_helper(
    dev: list[int], tmap: list[MapDim], opt_size: int, shape: list[int], cuts: list[int], repeated: list[int]
) -> tuple[list[int], list[MapDim], list[int], list[int]]:
    """``_construct_tensor_layout_helper``: optimizer sharding takes the repeated device dims, innermost
    first."""
    new_dev = list(dev)
    dev_map = list(range(len(dev)))
    opt_dims: list[int] = []
    remaining = opt_size if opt_size != -1 else _prod(dev[i] for i in repeated)
    for dim in repeated[::-1]:
        size = dev[dim]
        if remaining // size == 0:
            if size % remaining:
                raise LayoutError(
                    f"device dim {dim} of {dev} cannot be cut by optimizer sharding {remaining}"
                )
            size = remaining
            new_dev[dim] = dev[dim] // size
            new_dev.insert(dim + 1, size)
            for i in range(len(dev) - dim - 1, len(dev)):
                dev_map[i] += 1
        if remaining % size:
            raise LayoutError(f"optimizer sharding {remaining} does not divide device dim {dim} of {dev}")
        remaining //= size
        opt_dims.insert(0, dim)
        if remaining == 1:
            break
    new_map: list[MapDim] = list(tmap)
    if len(new_dev) != len(dev):
        opt_dims = [d + 1 for d in opt_dims]
        for index, item in enumerate(new_map):
            if isinstance(item, tuple | list):
                new_map[index] = tuple(dev_map[x] if x >= 0 else x for x in item)
            elif item >= 0:
                new_map[index] = dev_map[item]
    new_shape = list(shape)
    new_shape[0] = cuts[0]
    groups = list(range(len(shape)))
    rest = shape[0] // cuts[0]
    accu = 1
    for i in range(len(opt_dims) - 1):
        size = new_dev[opt_dims[i]]
        new_shape.insert(i + 1, size)
        groups.insert(i + 1, 0)
        accu *= size
    new_shape.insert(len(opt_dims), rest // accu)
    groups.insert(len(opt_dims), 0)
    for index, r_dim in enumerate(opt_dims):
        new_map.insert(index + 1, len(new_dev) - r_dim - 1)
    return new_dev, new_map, new_shape, groups


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def refined_layout(
    layout: Layout, shape: tuple[int, ...]
) -> tuple[list[int], list[int], list[int], list[int]]:
    """``(dev_matrix, flat tensor_map, refined shape, tensor dim of each refined dim)`` as MindSpore builds
    them for the transform (``_construct_tensor_layout_for_opt_shard``)."""
    dev = list(layout.dev_matrix)
    tmap: list[MapDim] = list(layout.tensor_map)
    full = list(shape)
    nested = any(isinstance(d, tuple) for d in tmap)
    opt = opt_shard_size(layout)
    if layout.opt_step == 0 or opt == 0 or not full:
        return _expand(dev, tmap, full, list(range(len(full))))
    cuts = tensor_strategy(dev, tuple(tmap))
    sharded = set()
    for dim in tmap:
        for m in dim if isinstance(dim, tuple) else (dim,):
            if m != -1:
                sharded.add(len(dev) - m - 1)
    repeated = [i for i, v in enumerate(dev) if i not in sharded and v > 1]
    if not repeated:
        raise LayoutError(f"device matrix {dev} and tensor map {tmap} leave nothing for optimizer sharding")
    if nested:
        new_dev, new_map, new_shape, groups = _opt_helper(dev, tmap, layout.opt_size, full, cuts, repeated)
        return _expand(new_dev, new_map, new_shape, groups)
    if len(repeated) == 1 and _prod(dev[repeated[0] + 1 :]) != layout.opt_step:
        raise LayoutError(
            f"optimizer sharding step {layout.opt_step} differs from the model-parallel size "
            f"{_prod(dev[repeated[0] + 1 :])}"
        )
    if (1 < len(repeated) < len(dev)) or repeated[0] > 0:
        new_dev, new_map, new_shape, groups = _opt_helper(dev, tmap, layout.opt_size, full, cuts, repeated)
        return _expand(new_dev, new_map, new_shape, groups)
    # MindSpore's plain case: the model-parallel cuts become the device matrix, behind the optimizer dim
    new_shape = [cuts[0], full[0] // cuts[0], *full[1:]]
    groups = [0, 0, *range(1, len(full))]
    flat_map = [-1 if n == 1 else len(cuts) - 1 - i for i, n in enumerate(cuts)]
    flat_map.insert(1, len(cuts))
    new_dev = [opt, *cuts]
    repeat = _prod(dev) // (layout.opt_step * opt)
    if repeat > 1:
        new_dev.insert(0, repeat)
    return new_dev, flat_map, new_shape, groups


def rank_boxes(layout: Layout, shape: tuple[int, ...]) -> list[list[Box]]:
    """For each rank of a stage (``0 .. layout.devices - 1``), the boxes of the full tensor it holds, in the
    order its stored slice holds them. LayoutError when the shape cannot be cut this way."""
    if layout.field > 0:
        return _field_boxes(layout, shape)
    if not shape:
        return [[()] for _ in range(layout.devices)]
    if len(layout.tensor_map) != len(shape):
        raise LayoutError(f"the strategy maps {len(layout.tensor_map)} dims but the tensor has {len(shape)}")
    if layout.split_shape:
        return _uneven_boxes(layout, shape)
    dev, tmap, rshape, groups = refined_layout(layout, shape)
    if _prod(dev) != layout.devices:
        raise LayoutError(
            f"the refined device matrix {dev} has {_prod(dev)} devices, not {layout.devices}: not supported"
        )
    out = []
    for rank in range(layout.devices):
        coord = _coordinate(rank, dev)
        lows, lens = [], []
        for m, size in zip(tmap, rshape, strict=True):
            n = 1 if m == -1 else _dev(dev, m)
            if size % n:
                raise LayoutError(f"a dim of {size} cannot be cut into {n} equal slices")
            chunk = size // n
            idx = 0 if m == -1 else coord[len(dev) - 1 - m]
            lows.append(idx * chunk)
            lens.append(chunk)
        box = []
        for dim in range(len(shape)):
            parts = [j for j, g in enumerate(groups) if g == dim]
            start, stride, count = 0, 1, 1
            for j in reversed(parts):
                start += lows[j] * stride
                count *= lens[j]
                stride *= rshape[j]
            # contiguous only if, after the first refined dim cut to more than one index, all are whole
            seen_run = False
            for j in parts:
                if seen_run and lens[j] != rshape[j]:
                    raise LayoutError("the layout gives a rank a slice that is not one block: not supported")
                if lens[j] > 1:
                    seen_run = True
            box.append((start, start + count))
        out.append([tuple(box)])
    return out


def _uneven_boxes(layout: Layout, shape: tuple[int, ...]) -> list[list[Box]]:
    if any(isinstance(d, tuple) for d in layout.tensor_map) or (opt_shard_size(layout) and layout.opt_step):
        raise LayoutError(
            "param_split_shape together with nested maps or optimizer sharding is not supported"
        )
    dev = list(layout.dev_matrix)
    cuts = tensor_strategy(dev, layout.tensor_map)
    starts, dim0 = _uneven_dim0(layout, cuts)
    if dim0 != shape[0]:
        raise LayoutError(f"param_split_shape sums to {dim0} rows, not {shape[0]}")
    out = []
    inner = _prod(cuts) // cuts[0]
    for rank in range(layout.devices):
        coord = _coordinate(rank, dev)
        box = []
        for i, (m, n, size) in enumerate(zip(layout.tensor_map, cuts, shape, strict=True)):
            idx = 0 if m == -1 else coord[len(dev) - 1 - m]
            if i == 0:
                start = starts[idx]
                box.append((start, start + layout.split_shape[idx * inner]))
                continue
            if size % n:
                raise LayoutError(f"dim {i} of {size} cannot be cut into {n} equal slices")
            chunk = size // n
            box.append((idx * chunk, (idx + 1) * chunk))
        out.append([tuple(box)])
    return out


def _field_boxes(layout: Layout, shape: tuple[int, ...]) -> list[list[Box]]:
    devices, fields = layout.devices, layout.field
    if len(shape) < 1 or shape[0] % (devices * fields):
        raise LayoutError(f"{shape[0] if shape else 0} rows cannot hold {fields} fields over {devices} ranks")
    rows = shape[0] // (devices * fields)  # rows of one field on one rank
    rest = tuple((0, d) for d in shape[1:])
    per_field = shape[0] // fields
    return [
        [((f * per_field + j * rows, f * per_field + (j + 1) * rows), *rest) for f in range(fields)]
        for j in range(devices)
    ]
