"""Read MindSpore's parallel strategy file (how each parameter was cut across ranks) without MindSpore.

Two forms exist. The protobuf one (``strategy_ckpt_save_file``, usually ``*strategy*.ckpt``) is a
``ParallelStrategyMap`` (schema: ``mindspore/train/node_strategy_pb2.py``)::

    ParallelStrategyMap { uint32 current_stage = 1; repeated ParallelStrategyItem parallel_strategy_item = 2;
                          repeated ParallelLayoutItem parallel_layout_item = 3; }
    ParallelLayoutItem { string param_name = 1; ParallelLayouts parallel_layouts = 2; }
    ParallelLayouts { repeated DevMatrix dev_matrix = 1; repeated TensorMap tensor_map = 2;
                      repeated ParamSplitShape param_split_shape = 3;
                      repeated IndicesOffset indices_offset = 4;
                      int32 field = 5; int32 opt_weight_shard_step = 6; int32 opt_weight_shard_size = 7; }
    DevMatrix { repeated uint32 dim = 1; }  TensorMap { repeated int32 dim = 1; }
    ParamSplitShape, IndicesOffset { repeated int64 dim = 1; }

The JSON one, which ``build_searched_strategy`` also accepts, holds ``{"parallel_layout_item": {name:
{"dev_matrix": [...], "tensor_map": [...], "param_split_shape": [...], "indices_offset": [...], "field": 0,
"opt_weight_shard_step": 0, "opt_weight_shard_size": 0}}}``. Several ``TensorMap`` messages mean a nested
map (one list of device dims per tensor dim), as MindSpore's ``_convert_to_list`` reads them. A name
``"<stage>-<param>"`` is a parameter of pipeline stage ``<stage>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container
from dataclasses import dataclass

from ..errors import CheckpointError
from ..formats.protowire import Malformed, varint
from ..formats.window import read_regular

_MAX_STRATEGY_BYTES = 256 << 20
MAX_DEVICES = 1 << 20  # devices one layout may name (the product of its device matrix)
MAX_DIMS = 32  # dims of a device matrix, a tensor map or a nested map entry
_MAX_STAGE_DIGITS = 6
_LAYOUT_KEYS = frozenset({"dev_matrix", "tensor_map", "param_split_shape", "indices_offset", "field",
                          "opt_weight_shard_step", "opt_weight_shard_size"})  # fmt: skip

MapDim = int | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """How one parameter is cut: MindSpore's per-parameter strategy, as written in the strategy file."""

    dev_matrix: tuple[int, ...]
    tensor_map: tuple[MapDim, ...]
    split_shape: tuple[int, ...] = ()  # param_split_shape: dim-0 size of each slice when uneven
    indices_offset: tuple[int, ...] = ()
    field: int = 0
    opt_step: int = 0  # opt_weight_shard_step
    opt_size: int = 0  # opt_weight_shard_size (-1: all repeated devices)
    stage: int = 0

    @property
    def devices(self) -> int:
        """Devices of one pipeline stage: the product of the device matrix."""
        n = 1
        for d in self.dev_matrix:
            n *= d
        return n

    def to_json(self) -> dict[str, object]:
        """The JSON form MindSpore's ``build_searched_strategy`` reads (flat tensor maps only)."""
        return {
            "dev_matrix": list(self.dev_matrix),
            "tensor_map": [list(d) if isinstance(d, tuple) else d for d in self.tensor_map],
            "param_split_shape": list(self.split_shape),
            "indices_offset": list(self.indices_offset),
            "field": self.field,
            "opt_weight_shard_step": self.opt_step,
            "opt_weight_shard_size": self.opt_size,
        }


@dataclass(frozen=True, slots=True)
class Strategy:
    """The layouts of a strategy file (or of several, merged): parameter name -> Layout."""

    files: tuple[str, ...]
    layouts: dict[str, Layout]

    @property
    def path(self) -> str:
        return self.files[0] if self.files else ""


# -- protobuf wire format -----------------------------------------------------------------------------------


def _fields(buf: bytes, pos: int, end: int):
    """Yield ``(field number, wire type, value)``: an int for varints, ``(start, stop)`` for
    length-delimited fields."""
    while pos < end:
        key, pos = varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Malformed(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = varint(buf, pos, end)
            yield number, wire, value
        elif wire == 2:
            length, pos = varint(buf, pos, end)
            if pos + length > end:
                raise Malformed(f"field of {length} bytes at byte {pos} runs past its message")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise Malformed(f"fixed-size field runs past its message at byte {pos}")
        else:
            raise Malformed(f"unsupported wire type {wire} at byte {pos}")


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(buf: bytes, start: int, stop: int) -> tuple[int, ...]:
    """A ``{ repeated intNN dim = 1; }`` message: packed or not, signed as int32/int64 are."""
    out: list[int] = []
    for number, wire, value in _fields(buf, start, stop):
        if number != 1:
            continue
        if wire == 0:
            out.append(_signed(value))
        elif wire == 2:
            pos, end = value
            while pos < end:
                v, pos = varint(buf, pos, end)
                out.append(_signed(v))
    return tuple(out)


def _layouts(buf: bytes, start: int, stop: int) -> Layout:
    dev: list[tuple[int, ...]] = []
    maps: list[tuple[int, ...]] = []
    split: list[tuple[int, ...]] = []
    offsets: list[tuple[int, ...]] = []
    scalars = {5: 0, 6: 0, 7: 0}
    for number, wire, value in _fields(buf, start, stop):
        if wire == 2 and number in (1, 2, 3, 4):
            ints = _ints(buf, *value)
            (dev, maps, split, offsets)[number - 1].append(ints)
        elif wire == 0 and number in scalars:
            scalars[number] = _signed(value)
    if not dev:
        raise Malformed("a layout without a device matrix")
    if (
        len(maps) > 1
    ):  # nested: one TensorMap per tensor dim, empty ones dropped (MindSpore's _convert_to_list)
        tensor_map: tuple[MapDim, ...] = tuple(m for m in maps if m)
    else:
        tensor_map = maps[0] if maps else ()
    return Layout(
        dev_matrix=dev[0],
        tensor_map=tensor_map,
        split_shape=split[0] if split else (),
        indices_offset=offsets[0] if offsets else (),
        field=scalars[5],
        opt_step=scalars[6],
        opt_size=scalars[7],
    )


class _Unknown(Exception):
    """Internal: the strategy names a parameter the set does not hold (parsing stops there)."""


def _stage_name(raw_name: str) -> tuple[int, str]:
    """``(stage, name)`` of ``"<stage>-<name>"`` (ASCII digits only), else ``(0, raw_name)``."""
    head, sep, rest = raw_name.partition("-")
    if sep and head.isascii() and head.isdigit() and len(head) <= _MAX_STAGE_DIGITS and rest:
        return int(head), rest
    return 0, raw_name


def _expect(name: str, known: Container[str] | None) -> None:
    if known is not None and _stage_name(name)[1] not in known:
        raise _Unknown(name)


def _parse_protobuf(buf: bytes, known: Container[str] | None = None) -> dict[str, Layout]:
    layouts: dict[str, Layout] = {}
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number != 3 or wire != 2:
            continue
        name: str | None = None
        layout: Layout | None = None
        for inner, iwire, ivalue in _fields(buf, *value):
            if inner == 1 and iwire == 2:
                try:
                    name = buf[ivalue[0] : ivalue[1]].decode("utf-8")
                except UnicodeDecodeError:
                    raise Malformed(f"a parameter name is not UTF-8 text at byte {ivalue[0]}") from None
                _expect(name, known)  # before its layout is parsed: a strategy of a million strangers stops
            elif inner == 2 and iwire == 2:
                layout = _layouts(buf, *ivalue)
        if name is None or layout is None:
            raise Malformed(f"a layout item without {'a name' if name is None else 'a layout'}")
        layouts[name] = layout
    return layouts


def _int_list(value: object, what: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise Malformed(f"{what} is not a list of integers")
    return tuple(value)


def _parse_json(text: str, known: Container[str] | None = None) -> dict[str, Layout]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError also for integers of over 4,300 digits
        raise Malformed(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("parallel_layout_item"), dict):
        raise Malformed("no 'parallel_layout_item' object")
    layouts: dict[str, Layout] = {}
    for name, item in data["parallel_layout_item"].items():
        _expect(name, known)
        if not isinstance(item, dict):
            raise Malformed(f"the layout of {name!r} is not an object")
        unknown = sorted(set(item) - _LAYOUT_KEYS)
        if unknown:  # a misspelled key would silently count as 0
            raise Malformed(f"the layout of {name!r} has unknown keys {', '.join(map(repr, unknown[:5]))}")
        raw_map = item.get("tensor_map")
        if not isinstance(raw_map, list):
            raise Malformed(f"the layout of {name!r} has no tensor_map list")
        tensor_map: list[MapDim] = []
        for d in raw_map:
            if isinstance(d, list):
                tensor_map.append(_int_list(d, f"tensor_map of {name!r}"))
            elif isinstance(d, int) and not isinstance(d, bool):
                tensor_map.append(d)
            else:
                raise Malformed(f"tensor_map of {name!r} holds {d!r}")
        scalars = []
        for key in ("field", "opt_weight_shard_step", "opt_weight_shard_size"):
            v = item.get(key, 0) or 0
            if not isinstance(v, int) or isinstance(v, bool):
                raise Malformed(f"{key} of {name!r} is not an integer")
            scalars.append(v)
        dev = _int_list(item.get("dev_matrix"), f"dev_matrix of {name!r}")
        if not dev:
            raise Malformed(f"the layout of {name!r} has no dev_matrix")
        layouts[name] = Layout(
            dev_matrix=dev,
            tensor_map=tuple(tensor_map),
            split_shape=_int_list(item.get("param_split_shape"), f"param_split_shape of {name!r}"),
            indices_offset=_int_list(item.get("indices_offset"), f"indices_offset of {name!r}"),
            field=scalars[0],
            opt_step=scalars[1],
            opt_size=scalars[2],
        )
    return layouts


def _with_stages(layouts: dict[str, Layout]) -> dict[str, Layout]:
    """Strip pipeline-stage prefixes (``"1-name"``); a parameter in several stages keeps its lowest stage."""
    out: dict[str, Layout] = {}
    for raw_name, layout in layouts.items():
        stage, name = _stage_name(raw_name)
        staged = Layout(
            layout.dev_matrix,
            layout.tensor_map,
            layout.split_shape,
            layout.indices_offset,
            layout.field,
            layout.opt_step,
            layout.opt_size,
            stage,
        )
        if name not in out or stage < out[name].stage:
            out[name] = staged
    return out


def read_strategy(path: str | os.PathLike[str], known: Container[str] | None = None) -> Strategy:
    """Parse one strategy file, protobuf or JSON (told apart by content); CheckpointError when it is
    not one, or (``known``: the names the set holds) when it names a parameter outside ``known``."""
    path = os.fspath(path)
    buf = read_regular(path, _MAX_STRATEGY_BYTES, "a strategy file")  # FileNotFoundError for a missing file
    if not buf:
        raise CheckpointError(path, "the strategy file is empty")
    return parse_strategy(path, buf, known)


def parse_strategy(path: str, buf: bytes, known: Container[str] | None = None) -> Strategy:
    """``read_strategy`` of a strategy file's bytes (``path`` names it: a file or a URL)."""
    if not buf:
        raise CheckpointError(path, "the strategy file is empty")
    if len(buf) > _MAX_STRATEGY_BYTES:
        raise CheckpointError(path, f"a strategy file of {len(buf)} bytes is too large to be one")
    try:
        if buf.lstrip()[:1] == b"{":
            layouts = _parse_json(buf.decode("utf-8", errors="replace"), known)
        else:
            layouts = _parse_protobuf(buf, known)
    except Malformed as exc:
        raise CheckpointError(path, f"not a MindSpore parallel strategy file: {exc}") from None
    except _Unknown as exc:
        raise CheckpointError(path, f"the strategy names {exc.args[0]!r}, which no rank file holds") from None
    if not layouts:
        raise CheckpointError(path, "not a MindSpore parallel strategy file: it lists no parameter layouts")
    for name, layout in layouts.items():
        _check(path, name, layout)
    return Strategy((path,), _with_stages(layouts))


def _check(path: str, name: str, layout: Layout) -> None:
    """CheckpointError for a layout no real strategy holds; every size is bounded before anything uses it."""
    dev = layout.dev_matrix
    if len(dev) > MAX_DIMS or len(layout.tensor_map) > MAX_DIMS:
        raise CheckpointError(
            path, f"the layout of {name!r} has {len(dev)} device dims and {len(layout.tensor_map)} "
            f"tensor dims (at most {MAX_DIMS} each)",
        )  # fmt: skip
    if any(d <= 0 for d in dev):
        raise CheckpointError(path, f"the device matrix of {name!r} is {list(dev)}")
    devices = 1
    for d in dev:
        devices *= d
        if devices > MAX_DEVICES:
            shown = list(dev) if len(str(list(dev))) < 200 else f"{str(list(dev))[:200]}..."
            raise CheckpointError(
                path, f"the device matrix of {name!r} ({shown}) names more than {MAX_DEVICES:,} devices"
            )
    n = len(dev)
    for dim in layout.tensor_map:
        if isinstance(dim, tuple):
            if not dim or len(dim) > MAX_DIMS:
                raise CheckpointError(path, f"the tensor map of {name!r} holds a nested entry {list(dim)}")
            if len(dim) > 1 and -1 in dim:
                raise CheckpointError(
                    path, f"the tensor map of {name!r} mixes -1 (not cut) into the nested entry {list(dim)}"
                )
        for m in dim if isinstance(dim, tuple) else (dim,):
            if not -1 <= m < n:
                raise CheckpointError(
                    path,
                    f"the tensor map of {name!r} refers to device dim {m}, but the device matrix "
                    f"{list(dev)} has {n}",
                )
    lists = (("param_split_shape", layout.split_shape), ("indices_offset", layout.indices_offset))
    for what, values in lists:
        if len(values) > MAX_DEVICES or any(v < 0 for v in values):
            raise CheckpointError(path, f"the {what} of {name!r} is not a list of sizes")
    if layout.field < 0 or layout.opt_step < 0 or layout.opt_size < -1:
        raise CheckpointError(
            path, f"the layout of {name!r} has field {layout.field}, opt_weight_shard_step "
            f"{layout.opt_step}, opt_weight_shard_size {layout.opt_size}",
        )  # fmt: skip
    if layout.opt_size > devices:
        raise CheckpointError(
            path, f"the optimizer sharding of {name!r} ({layout.opt_size}) exceeds its {devices} devices"
        )


def merge_strategies(strategies: list[Strategy]) -> Strategy:
    """One strategy from several files (one per pipeline stage or per rank): the same name must agree."""
    layouts: dict[str, Layout] = {}
    files: list[str] = []
    for s in strategies:
        files.extend(s.files)
        for name, layout in s.layouts.items():
            known = layouts.get(name)
            if known is not None and known != layout and known.stage == layout.stage:
                raise CheckpointError(
                    s.path, f"the layout of {name!r} differs from the one in {os.path.basename(files[0])}"
                )
            if known is None or layout.stage < known.stage:
                layouts[name] = layout
    return Strategy(tuple(files), layouts)
