"""Merge a checkpoint set into one checkpoint with MindSpore's own tools: ``merge(ck, dst)`` (also
``ms_notebook.merge``, the browser's Merge button and ``ms-notebook merge``). It lives here, with the other
MindSpore glue, so the checkpoint index never imports this layer.

- Per-rank sets: ``mindspore.transform_checkpoints`` (to one rank, no destination strategy), or
  ``mindspore.parallel.unified_safetensors`` for MindFormers' folder layout; sets with uneven
  (``param_split_shape``) or ``field`` splits, or holding strings, which the transform does not handle, go
  through ``mindspore.merge_sliced_parameter`` per parameter. MindSpore reads a rank folder by its own rule,
  so it is given a folder of links to exactly the files the set uses, and a strategy written from the layouts
  the set used (so it also names the optimizer tensors found following their parameter's layout).
- Sets of whole tensors (shards): each value is read from the set and written by
  ``mindspore.save_checkpoint``.

Everything is written under a temporary name beside ``dst`` and renamed into place, so ``dst`` is either the
old file (or absent) or the complete result; the result is opened and checked against the set's index.
``dst`` may not be one of the set's own files or lie inside its folders, and an existing ``dst`` must be a
regular file (a folder for ``unified``): never a device or FIFO. The temporary folder's name carries the
merging process's id, so the leftovers of a killed merge are removed by the next merge beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

from ms_notebook.checkpoint import Checkpoint, CheckpointError, open_checkpoint

if TYPE_CHECKING:
    from ms_notebook.checkpoint.sets import CheckpointSet, Layout

FORMATS = ("ckpt", "safetensors", "unified")
Progress = Callable[[float, str], None]


def merge(
    ck: CheckpointSet,
    dst: str | os.PathLike[str],
    format: str | None = None,
    *,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> Checkpoint:
    """Write the set ``ck`` as one checkpoint with MindSpore's own tools and open the result.

    ``format``: ``"ckpt"`` or ``"safetensors"`` (one file at ``dst``), or ``"unified"`` (a folder in
    MindFormers' layout, through ``mindspore.parallel.unified_safetensors``); by default the set's format.
    Written to a temporary name and renamed, so ``dst`` is never half-written. A single-file checkpoint is
    refused with a ``CheckpointError`` (there is nothing to merge).
    """
    from ms_notebook.checkpoint.sets import CheckpointSet

    if not isinstance(ck, CheckpointSet):
        raise CheckpointError(str(getattr(ck, "path", ck)), "one file, not a set: there is nothing to merge")
    if getattr(ck, "remote", None) is not None:
        raise CheckpointError(
            ck.path, "merging runs MindSpore's tools on whole files: download the set first, then merge"
        )
    ck._check_unchanged()
    return merge_set(ck, os.fspath(dst), format=format, progress=progress, overwrite=overwrite)


def merge_set(
    ck: CheckpointSet,
    dst: str,
    *,
    format: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> Checkpoint:
    """Write ``ck`` as one checkpoint at ``dst`` (see the module docstring); returns the opened result."""
    fmt = format or ck.format
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    dst = os.path.abspath(dst)
    parent = os.path.dirname(dst)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"no folder {parent} to write {os.path.basename(dst)} into")
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(f"{dst} exists: pass overwrite=True to replace it")
    if fmt == "unified" and (ck.kind != "ranks" or ck.format != "safetensors"):
        raise ValueError("format='unified' merges a set of per-rank .safetensors files")
    _check_destination(ck, dst, fmt)
    report = progress or (lambda _f, _m: None)
    os.environ.setdefault("GLOG_v", "3")  # before MindSpore's first import, quiet its warnings
    clean_leftovers(dst)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.{os.getpid()}.", suffix=".merging", dir=parent)
    try:
        report(0.02, "preparing")
        if ck.kind == "ranks":
            result = _merge_ranks(ck, tmp, fmt, report)
        else:
            result = _merge_whole(ck, tmp, fmt, report)
        report(0.9, "checking the result")
        _check_result(ck, result)
        report(0.95, f"moving into place as {os.path.basename(dst)}")
        _replace(result, dst, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    merged = open_checkpoint(dst)
    report(1.0, f"merged into {os.path.basename(dst)}")
    return merged


def _check_destination(ck: CheckpointSet, dst: str, fmt: str) -> None:
    """CheckpointError for a destination that is one of the set's files (by path or by inode), lies inside
    one of its folders, or exists as anything but a regular file (a folder for ``unified``)."""
    real = os.path.realpath(dst)
    folders = {os.path.dirname(os.path.realpath(f)) for f in ck.files}
    if os.path.isdir(ck.path):
        folders.add(os.path.realpath(ck.path))
    own = {os.path.realpath(f) for f in ck.files}
    try:
        st = os.stat(dst)
    except FileNotFoundError:
        st = None
    same_inode = st is not None and any(
        (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino) for f in ck.files for s in _stat_or_none(f)
    )
    if real in own or same_inode:
        raise CheckpointError(dst, "is one of the set's own files: merging onto it would destroy the set")
    if real in folders:
        raise CheckpointError(dst, "is one of the set's folders")
    inside = [f for f in folders if os.path.commonpath([real, f]) == f]
    if inside:  # a new file there would join the set (or shadow a rank's file) when it is opened again
        where = os.path.basename(inside[0])
        raise CheckpointError(dst, f"lies inside {where}/, a folder of the set's files: write it elsewhere")
    if st is not None:
        wanted = stat.S_ISDIR(st.st_mode) if fmt == "unified" else stat.S_ISREG(st.st_mode)
        if not wanted:
            kind = "a folder" if fmt == "unified" else "a regular file"
            raise CheckpointError(dst, f"exists and is not {kind}: merge writes only {kind} there")


def _stat_or_none(path: str) -> list[os.stat_result]:
    try:
        return [os.stat(path)]
    except OSError:
        return []


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[A-Za-z0-9_]+\.merging")


def clean_leftovers(dst: str) -> list[str]:
    """Remove temporary folders that killed merges onto ``dst`` left beside it (their process is gone);
    returns the removed paths. Only folders named as merge names them, owned by this user, are touched."""
    parent, name = os.path.split(os.path.abspath(dst))
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            m = _LEFTOVER.fullmatch(entry.name)
            if not m or m["name"] != name or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or _alive(int(m["pid"])):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# -- per-rank sets -------------------------------------------------------------------------------------------


def _merge_ranks(ck: CheckpointSet, tmp: str, fmt: str, report: Progress) -> str:
    import mindspore as ms

    src = os.path.join(tmp, "ranks")
    for rank, picked in ck.rank_files.items():
        folder = os.path.join(src, f"rank_{rank}")
        os.makedirs(folder)
        os.symlink(picked.file, os.path.join(folder, os.path.basename(picked.file)))
    layouts = {name: ck.layout(name) for name in ck if ck.layout(name) is not None}
    strategy = _strategy_file(ck, layouts, tmp)
    out = os.path.join(tmp, "out")
    # MindSpore's transform handles neither uneven/field splits nor files holding strings (append_dict text)
    uneven = any(lay.split_shape or lay.field for lay in layouts.values())
    uneven = uneven or any(info.kind == "str" for info in ck.entries)
    if fmt == "unified":
        from mindspore.parallel import unified_safetensors

        report(0.1, "mindspore.parallel.unified_safetensors")
        unified_safetensors(src, strategy or _replicated_strategy(ck, tmp), out)
        return out
    if uneven:
        return _merge_sliced(ck, layouts, strategy, tmp, fmt, report)
    report(0.1, "mindspore.transform_checkpoints")
    out_format = "ckpt" if ck.format == "ckpt" else fmt  # MindSpore turns .ckpt sets only into .ckpt
    ms.transform_checkpoints(src, out, "merged", strategy, None, output_format=out_format)
    result = os.path.join(out, "rank_0", f"merged0.{out_format}")
    if out_format != fmt:
        report(0.8, f"writing .{fmt} with mindspore.save_checkpoint")
        values = ms.load_checkpoint(result)
        result = os.path.join(tmp, f"merged.{fmt}")
        ms.save_checkpoint([{"name": k, "data": v} for k, v in values.items()], result, format=fmt)
    return result


def _strategy_file(ck: CheckpointSet, layouts: dict[str, Layout], tmp: str) -> str | None:
    """A protobuf strategy written from the layouts the set used: the optimizer tensors that follow their
    parameter's layout included, and in the form MindSpore reads best (its JSON reader needs every field)."""
    if not layouts:
        return None
    return _write_strategy(layouts, os.path.join(tmp, "strategy.ckpt"))


def _replicated_strategy(ck: CheckpointSet, tmp: str) -> str:
    """A strategy for a data-parallel set (unified_safetensors needs one): every tensor whole on every
    rank."""
    from ms_notebook.checkpoint.sets import Layout

    devices = len(ck.rank_files)
    layouts = {
        i.name: Layout((devices,), tuple(-1 for _ in i.shape)) for i in ck.entries if i.kind == "tensor"
    }
    return _write_strategy(layouts, os.path.join(tmp, "strategy.ckpt"))


def _write_strategy(layouts: dict[str, Layout], path: str) -> str:
    from mindspore.train import node_strategy_pb2 as pb

    m = pb.ParallelStrategyMap()
    m.current_stage = 0
    for name, lay in layouts.items():
        item = m.parallel_layout_item.add()
        item.param_name = f"{lay.stage}-{name}" if lay.stage else name
        out = item.parallel_layouts
        out.dev_matrix.add().dim.extend(lay.dev_matrix)
        if any(isinstance(d, tuple) for d in lay.tensor_map):
            for d in lay.tensor_map:
                out.tensor_map.add().dim.extend(d if isinstance(d, tuple) else (d,))
        else:
            out.tensor_map.add().dim.extend(lay.tensor_map)
        out.param_split_shape.add().dim.extend(lay.split_shape)
        out.indices_offset.add().dim.extend(lay.indices_offset)
        out.field = lay.field
        out.opt_weight_shard_step = lay.opt_step
        out.opt_weight_shard_size = lay.opt_size
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return path


def _merge_sliced(
    ck: CheckpointSet,
    layouts: dict[str, Layout],
    strategy: str | None,
    tmp: str,
    fmt: str,
    report: Progress,
) -> str:
    """``merge_sliced_parameter`` for every cut tensor; the rest copied from the lowest rank holding it."""
    import mindspore as ms
    from mindspore import Parameter

    if any(lay.opt_size and lay.opt_step for lay in layouts.values()):
        raise CheckpointError(
            ck.path,
            "merging optimizer-sharded parameters together with uneven splits or strings is not supported",
        )
    searched = ms.build_searched_strategy(strategy) if strategy else {}
    loaded = {rank: ms.load_checkpoint(p.file, format=ck.format) for rank, p in ck.rank_files.items()}
    data = []
    texts = {}
    names = list(ck)
    for i, name in enumerate(names):
        lay = layouts.get(name)
        if lay is None:
            rank = min(r for r in loaded if name in loaded[r])
            value = loaded[rank][name]
            if isinstance(value, str):
                texts[name] = value  # strings are saved through append_dict
            else:
                data.append({"name": name, "data": value})
            continue
        ranks = [lay.stage * lay.devices + k for k in range(lay.devices)]
        sliced = [Parameter(loaded[r][name].data, name) for r in ranks]
        merged = ms.merge_sliced_parameter(sliced, {name: searched[_strategy_key(searched, name, lay)]})
        value = merged.data
        if value.dtype != sliced[0].data.dtype:
            value = value.astype(sliced[0].data.dtype)  # it widens bfloat16 to float32: back, losslessly
        data.append({"name": name, "data": value})
        report(0.1 + 0.7 * (i + 1) / len(names), f"merge_sliced_parameter {name}")
    result = os.path.join(tmp, f"merged.{fmt}")
    ms.save_checkpoint(data, result, format=fmt, append_dict=texts or None)
    return result


def _strategy_key(searched: dict, name: str, lay: Layout) -> str:
    staged = f"{lay.stage}-{name}"
    return staged if staged in searched else name


# -- sets of whole tensors ---------------------------------------------------------------------------------


def _merge_whole(ck: Checkpoint, tmp: str, fmt: str, report: Progress) -> str:
    import mindspore as ms

    data = []
    names = [i.name for i in ck.entries if i.kind == "tensor"]
    for i, name in enumerate(names):
        data.append({"name": name, "data": ms.Tensor(ck[name])})
        report(0.05 + 0.7 * (i + 1) / max(1, len(names)), f"read {name}")
    result = os.path.join(tmp, f"merged.{fmt}")
    report(0.8, f"writing .{fmt} with mindspore.save_checkpoint")
    ms.save_checkpoint(data, result, format=fmt)
    return result


# -- result ------------------------------------------------------------------------------------------------


def _check_result(ck: Checkpoint, result: str) -> None:
    """The merged index must list the set's names with its shapes and dtypes."""
    merged = open_checkpoint(result)
    want = {i.name: (i.shape, i.dtype) for i in ck.entries if i.kind == "tensor"}
    got = {i.name: (i.shape, i.dtype) for i in merged.entries if i.kind == "tensor"}
    missing = sorted(set(want) - set(got))
    wrong = sorted(n for n in want if n in got and got[n] != want[n])
    if missing or wrong:
        detail = (
            f"{len(missing)} tensors missing ({', '.join(missing[:3])})"
            if missing
            else f"{wrong[0]} is {got[wrong[0]]} instead of {want[wrong[0]]}"
        )
        raise CheckpointError(ck.path, f"MindSpore's merge gave a different checkpoint: {detail}")


def _replace(result: str, dst: str, tmp: str) -> None:
    """Move ``result`` (a file or a folder) to ``dst`` in one rename; an old ``dst`` goes only after."""
    if os.path.isdir(result):
        if os.path.lexists(dst):
            old = os.path.join(tmp, "previous")
            os.rename(dst, old)  # removed with tmp
        os.rename(result, dst)
    else:
        os.replace(result, dst)
