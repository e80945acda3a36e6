"""A distributed run's checkpoint: ``rank_N/`` folders of ``.ckpt`` or ``.safetensors`` files, and the
strategy file that says how each parameter was cut.

Which file a rank folder contributes follows MindSpore's rule (``transform_checkpoints``): the
lexicographically last ``.ckpt`` name, or for ``.safetensors`` the name whose last two numbers are highest;
``step=`` or ``file=`` choose another, and the set says which it used. Every value's full shape is derived
from the slice a rank stores and its layout (``layout.py``); slices held by several ranks (replicas) are read
from the lowest rank and listed with every holder. Values the strategy does not name are either optimizer
state following their parameter's layout (same slice shapes on every rank) or copies on every rank.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container, Sequence

from ..dtypes import numpy_dtype
from ..errors import CheckpointError
from ..formats import Box, Piece, RawEntry, RawIndex
from ..formats import ckpt as ckpt_format
from ..formats import safetensors as st_format
from ..formats.window import open_regular
from .layout import LayoutError, full_shape, rank_boxes
from .model import Holder, RankFile, SetInfo, Slice, format_box, sub_spans
from .strategy import MAX_DEVICES, Layout, Strategy, merge_strategies, read_strategy

EXTENSIONS = {"ckpt": ".ckpt", "safetensors": ".safetensors"}
_SAMPLE = 4096  # bytes compared at each end of a value the strategy leaves out (all of a smaller one)
_RANK = re.compile(r"rank_([0-9]+)$")


class LocalFiles:
    """What a rank set needs of where its files are, on the local disk (``remote_index.RemoteFiles`` answers
    the same over URLs)."""

    listdir = staticmethod(os.listdir)
    isdir = staticmethod(os.path.isdir)
    isfile = staticmethod(os.path.isfile)

    @staticmethod
    def read_index(path: str, fmt: str) -> RawIndex:
        return (ckpt_format if fmt == "ckpt" else st_format).read_index(path)

    @staticmethod
    def read_strategy(path: str, known: Container[str] | None = None) -> Strategy:
        return read_strategy(path, known)

    @staticmethod
    def stamps() -> dict:
        return {}  # local files are stamped when the Checkpoint is made


LOCAL = LocalFiles()


def rank_dirs(folder: str, files: LocalFiles = LOCAL) -> dict[int, str]:
    """``{rank: path}`` of the ``rank_N`` folders (MindSpore's ``rank_[0-9]*`` with a numeric tail)."""
    out: dict[int, str] = {}
    for name in sorted(files.listdir(folder)):
        m = _RANK.fullmatch(name)
        path = os.path.join(folder, name)
        if not m or not files.isdir(path):
            continue
        if len(m[1]) > 7 or int(m[1]) >= MAX_DEVICES:
            raise CheckpointError(folder, f"{name[:40]}: rank numbers go up to {MAX_DEVICES - 1:,}")
        rank = int(m[1])
        if rank in out:
            raise CheckpointError(
                folder, f"rank {rank} has two folders: {os.path.basename(out[rank])} and {name}"
            )
        out[rank] = path
    return dict(sorted(out.items()))


def find_strategy_files(folder: str, files: LocalFiles = LOCAL) -> list[str]:
    """Strategy files beside the rank folders or in ``strategy/``: names containing ``strategy``, ending in
    ``.ckpt`` or ``.json``."""
    found = []
    for where in (folder, os.path.join(folder, "strategy")):
        if not files.isdir(where):
            continue
        for name in sorted(files.listdir(where)):
            path = os.path.join(where, name)
            if "strategy" in name.lower() and name.endswith((".ckpt", ".json")) and files.isfile(path):
                found.append(path)
    return found


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"[0-9]{1,18}", text)]


def _mindspore_pick(paths: list[str], fmt: str) -> tuple[str, str]:
    """MindSpore's choice among a rank folder's files, and the rule in words."""
    if fmt == "ckpt":
        return sorted(paths)[-1], "MindSpore's rule: the lexicographically last .ckpt name"
    best = sorted(paths, key=lambda p: (_numbers(p)[-2:], p))[-1]
    return best, "MindSpore's rule: the .safetensors name whose last two numbers are highest"


def _pick(
    rank: int, rank_dir: str, fmt: str, step: int | str | None, file: str | None, files: LocalFiles = LOCAL
) -> RankFile:
    ext = EXTENSIONS[fmt]
    names = sorted(n for n in files.listdir(rank_dir) if n.endswith(ext) and not n.startswith("."))
    paths = [os.path.join(rank_dir, n) for n in names if files.isfile(os.path.join(rank_dir, n))]
    if not paths:
        raise CheckpointError(rank_dir, f"holds no {ext} file")
    if file is not None:
        chosen = [p for p in paths if os.path.basename(p) == file]
        rule = f"file={file!r}"
    elif step is not None:
        if isinstance(step, str) and step.isdigit():
            step = int(step)  # "100" is the last number, as 100 is
        if isinstance(step, int):
            chosen = [p for p in paths if (_numbers(os.path.basename(p)) or [None])[-1] == step]
        else:
            chosen = [p for p in paths if os.path.basename(p)[: -len(ext)].endswith(str(step))]
        rule = f"step={step!r}"
    else:
        best, rule = _mindspore_pick(paths, fmt)
        return RankFile(rank, best, tuple(paths), rule)
    if len(chosen) != 1:
        listed = ", ".join(os.path.basename(p) for p in paths)
        what = "no file" if not chosen else f"{len(chosen)} files"
        raise CheckpointError(rank_dir, f"{what} match {rule} (it holds {listed})")
    return RankFile(rank, chosen[0], tuple(paths), rule)


def _format(dirs: dict[int, str], format: str | None, files: LocalFiles = LOCAL) -> str:
    if format is not None:
        if format not in EXTENSIONS:
            raise ValueError(f"format must be one of {tuple(EXTENSIONS)}, not {format!r}")
        return format
    present = set()
    for d in dirs.values():
        for n in files.listdir(d):
            for fmt, ext in EXTENSIONS.items():
                if n.endswith(ext):
                    present.add(fmt)
    if len(present) > 1:
        raise CheckpointError(
            next(iter(dirs.values())),
            "the rank folders hold both .ckpt and .safetensors files: pass format='ckpt' or 'safetensors'",
        )
    return present.pop() if present else "ckpt"


def _strategy(
    folder: str, strategy: str | os.PathLike[str] | Sequence[str] | None, known: Container[str] | None = None,
    files: LocalFiles = LOCAL,
) -> Strategy | None:
    if strategy is None:
        paths = find_strategy_files(folder, files)
    elif isinstance(strategy, str | os.PathLike):
        paths = [os.fspath(strategy)]
    else:
        paths = [os.fspath(p) for p in strategy]
    if not paths:
        return None
    return merge_strategies([files.read_strategy(p, known) for p in paths])


def _moment_of(name: str, layouts: dict[str, Layout]) -> str | None:
    """The parameter an optimizer-state name refers to: the longest dotted suffix the strategy names."""
    pos = name.find(".")
    while pos != -1:
        rest = name[pos + 1 :]
        if rest in layouts:
            return rest
        pos = name.find(".", pos + 1)
    return None


def _check_tiles(origin: str, name: str, shape: tuple[int, ...], boxes: list[Box]) -> None:
    """The distinct boxes must tile ``shape``: per dim, their ranges partition it, and every combination
    of one range per dim is present exactly once."""
    if not shape:
        return
    count = 1
    for dim, size in enumerate(shape):
        ranges = sorted({box[dim] for box in boxes})
        pos = 0
        for a, b in ranges:
            if a != pos or b <= a:
                raise CheckpointError(
                    origin,
                    f"the slices of {name!r} do not tile its full shape {list(shape)}: along dim {dim} "
                    f"they cover {', '.join(f'{x}:{y}' for x, y in ranges)}",
                )
            pos = b
        if pos != size:
            raise CheckpointError(
                origin, f"the slices of {name!r} cover {pos} of {size} along dim {dim} of {list(shape)}"
            )
        count *= len(ranges)
    if len(set(boxes)) != count:
        raise CheckpointError(origin, f"the slices of {name!r} do not tile its full shape {list(shape)}")


def _slices_of(
    name: str,
    layout: Layout,
    holders: dict[int, tuple[str, RawEntry]],
    origin: str,
    folder: str,
) -> tuple[tuple[int, ...], list[Slice]]:
    """Full shape and slices of one parameter cut by ``layout``, from the entries of the ranks holding it."""
    first_rank = min(holders)
    first = holders[first_rank][1]
    try:
        shape = full_shape(layout, first.shape)
        boxes = rank_boxes(layout, shape)
    except LayoutError as exc:
        raise CheckpointError(origin, f"{name!r}: {exc}") from None
    except (IndexError, ValueError, ZeroDivisionError, OverflowError) as exc:  # a layout no rule describes
        problem = f"the layout cannot cut {list(first.shape)} ({exc})"
        raise CheckpointError(origin, f"{name!r}: {problem}") from None
    dtype = numpy_dtype(first.ms_dtype)
    itemsize = dtype.itemsize if dtype is not None else 1
    by_box: dict[Box, list[Holder]] = {}
    devices = layout.devices
    for rank in sorted(holders):
        file, entry = holders[rank]
        local = rank % devices
        mine = boxes[local]
        sizes = []
        for box in mine:
            n = 1
            for a, b in box:
                n *= b - a
            sizes.append(n)
        expected = _stored_shape(mine)
        if tuple(entry.shape) != expected:
            where = ", ".join(format_box(b) for b in mine)
            raise CheckpointError(
                file,
                f"{name!r} is stored as {list(entry.shape)}, but the strategy gives rank_{rank} the slice "
                f"{where} of {list(shape)}, shaped {list(expected)}: the slices do not tile the full shape",
            )
        pos = 0
        for box, n in zip(mine, sizes, strict=True):
            spans = sub_spans(entry.spans, pos, n * itemsize) if len(mine) > 1 else tuple(entry.spans)
            by_box.setdefault(box, []).append(Holder(file, spans, rank))
            pos += n * itemsize
    every = {box for per_rank in boxes for box in per_rank}
    for local, per_rank in enumerate(boxes):
        for box in per_rank:
            if box not in by_box:
                owner = layout.stage * devices + local
                raise CheckpointError(
                    folder,
                    f"no rank holds the slice {format_box(box)} of {name!r} (it belongs to "
                    f"rank_{owner}, whose file lacks it or is missing)",
                )
    _check_tiles(origin, name, shape, sorted(every))
    order = sorted(by_box)
    return shape, [Slice(box, tuple(by_box[box])) for box in order]


def _stored_shape(boxes: list[Box]) -> tuple[int, ...]:
    """The shape a rank stores for its boxes: one box's shape, or (field layouts) the boxes stacked on
    dim 0."""
    first = tuple(b - a for a, b in boxes[0])
    if len(boxes) == 1:
        return first
    rows = sum(box[0][1] - box[0][0] for box in boxes)
    return (rows, *first[1:])


def read_rank_set(
    folder: str,
    *,
    strategy: str | os.PathLike[str] | Sequence[str] | None = None,
    format: str | None = None,
    step: int | str | None = None,
    file: str | None = None,
    files: LocalFiles = LOCAL,
) -> tuple[RawIndex, SetInfo]:
    """Index a folder of ``rank_N/`` checkpoint files (see the module docstring); ``files`` reads them
    (``remote_index.RemoteFiles``: a folder URL)."""
    if files is LOCAL:
        folder = os.path.abspath(folder)
    dirs = rank_dirs(folder, files)
    if not dirs:
        raise CheckpointError(folder, "holds no rank_N folders")
    fmt = _format(dirs, format, files)
    picks = {rank: _pick(rank, d, fmt, step, file, files) for rank, d in dirs.items()}
    indexes = {rank: files.read_index(p.file, fmt) for rank, p in picks.items()}
    # every name, in the lowest rank's file order, then names only later ranks hold
    per_name: dict[str, dict[int, tuple[str, RawEntry]]] = {}
    for rank, raw in indexes.items():
        for e in raw.entries:
            per_name.setdefault(e.name, {})[rank] = (picks[rank].file, e)
    strat = _strategy(folder, strategy, per_name, files)  # stops at the first name no rank holds
    layouts = strat.layouts if strat else {}
    origin = strat.path if strat else folder
    top = max(dirs)
    for pname, lay in layouts.items():
        if (lay.stage + 1) * lay.devices > top + 1:
            stage = f" in pipeline stage {lay.stage}" if lay.stage else ""
            raise CheckpointError(
                origin,
                f"the strategy cuts {pname!r} over {lay.devices} devices{stage}, but the rank folders go "
                f"only up to rank_{top}",
            )
    unknown = [n for n in layouts if n not in per_name]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3]) + (
            f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        )
        raise CheckpointError(origin, f"the strategy names {shown}, which no rank file holds")

    entries: list[RawEntry] = []
    slices: dict[str, list[Slice]] = {}
    used: dict[str, Layout] = {}
    inferred: dict[str, str] = {}
    replicated: list[str] = []
    fds: dict[str, int] = {}
    try:
        _walk_names(per_name, layouts, strat, origin, folder, fds if files is LOCAL else None,
                    entries, slices, used, inferred, replicated)  # fmt: skip
    finally:
        for fd in fds.values():
            os.close(fd)

    info = SetInfo(
        "ranks",
        slices,
        strategy=strat.files if strat else (),
        rank_files=picks,
        layouts=dict(used),
        inferred=inferred,
    )
    read_from = {h.rank for parts in slices.values() for s in parts for h in s.holders[:1]}
    info.replica_ranks = [r for r in dirs if r not in read_from]
    info.notes = _notes(folder, fmt, picks, strat, info, replicated)
    read_from_files = sorted({p.file for p in picks.values()}) + list(strat.files if strat else ())
    raw = RawIndex(fmt, entries, files=read_from_files, stamps=files.stamps())
    return raw, info


def _walk_names(
    per_name: dict[str, dict[int, tuple[str, RawEntry]]],
    layouts: dict[str, Layout],
    strat: Strategy | None,
    origin: str,
    folder: str,
    fds: dict[str, int] | None,
    entries: list[RawEntry],
    slices: dict[str, list[Slice]],
    used: dict[str, Layout],
    inferred: dict[str, str],
    replicated: list[str],
) -> None:
    """Each name's full shape and slices (filling the lists and dicts passed in)."""
    for name, holders in per_name.items():
        first_rank = min(holders)
        first = holders[first_rank][1]
        for path, e in holders.values():
            if e.ms_dtype != first.ms_dtype or e.kind != first.kind:
                raise CheckpointError(
                    path,
                    f"{name!r} is {e.ms_dtype} here but {first.ms_dtype} in rank_{first_rank}",
                )
        layout = layouts.get(name)
        if layout is None and first.kind == "tensor":
            param = _moment_of(name, layouts)
            if param is not None and all(
                rank in per_name[param] and per_name[param][rank][1].shape == e.shape
                for rank, (_, e) in holders.items()
            ):
                layout = layouts[param]
                inferred[name] = param
        if layout is not None and first.kind == "tensor":
            shape, parts = _slices_of(name, layout, holders, origin, folder)
            used[name] = layout
        else:
            shape = tuple(first.shape)
            for rank, (path, e) in holders.items():
                if tuple(e.shape) != shape:
                    hint = (
                        "" if strat else ": the ranks hold slices, so pass the strategy file (strategy=...)"
                    )
                    raise CheckpointError(
                        path,
                        f"{name!r} has shape {list(e.shape)} in rank_{rank} but {list(shape)} in "
                        f"rank_{first_rank}{hint}",
                    )
            if strat and len(holders) > 1 and fds is not None:  # local files (a remote set: not sampled)
                _same_on_every_rank(name, holders, fds)
            whole = tuple((0, d) for d in shape)
            parts = [
                Slice(whole, tuple(Holder(p, tuple(e.spans), r) for r, (p, e) in sorted(holders.items())))
            ]
            if strat:
                replicated.append(name)
        slices[name] = parts
        entries.append(_entry(name, first, shape, parts))



def _same_on_every_rank(name: str, holders: dict[int, tuple[str, RawEntry]], fds: dict[str, int]) -> None:
    """CheckpointError when a value the strategy leaves out differs between ranks: they hold slices of it,
    and showing the lowest rank's slice as the whole value would be silently wrong. Compares all of a small
    value, and the first and last ``_SAMPLE`` bytes of a bigger one (check_replicas() compares every byte)."""
    ranks = sorted(holders)

    def sample(path: str, entry: RawEntry) -> bytes:
        total = entry.nbytes
        ranges = [(0, total)] if total <= 2 * _SAMPLE else [(0, _SAMPLE), (total - _SAMPLE, _SAMPLE)]
        fd = fds.get(path)
        if fd is None:
            fd = fds[path] = open_regular(path)
        out = []
        for start, length in ranges:
            for offset, n in sub_spans(entry.spans, start, length):
                out.append(os.pread(fd, n, offset))
        return b"".join(out)

    reference = sample(*holders[ranks[0]])
    for rank in ranks[1:]:
        path, entry = holders[rank]
        if sample(path, entry) != reference:
            raise CheckpointError(
                path,
                f"{name!r} is not in the strategy, but rank_{rank} holds other values than rank_{ranks[0]}: "
                "the ranks hold slices of it, and the strategy must name it",
            )


def _entry(name: str, first: RawEntry, shape: tuple[int, ...], parts: list[Slice]) -> RawEntry:
    dtype = numpy_dtype(first.ms_dtype)
    if len(parts) == 1:  # one slice covering the whole value: read it straight from its first holder
        h = parts[0].holders[0]
        return RawEntry(name, shape, first.ms_dtype, first.kind, list(h.spans), first.nbytes, file=h.file)
    numel = 1
    for d in shape:
        numel *= d
    nbytes = numel * (dtype.itemsize if dtype is not None else 1)
    pieces = [Piece(s.holders[0].file, list(s.holders[0].spans), s.box) for s in parts]
    return RawEntry(name, shape, first.ms_dtype, first.kind, [], nbytes, pieces=pieces)


def _notes(
    folder: str,
    fmt: str,
    picks: dict[int, RankFile],
    strat: Strategy | None,
    info: SetInfo,
    replicated: list[str],
) -> list[str]:
    ranks = sorted(picks)
    span = f"rank_{ranks[0]}" if len(ranks) == 1 else f"rank_{ranks[0]} … rank_{ranks[-1]}"
    missing = []  # the first few rank numbers without a folder (numbers are bounded by MAX_DEVICES)
    for r in range(ranks[-1] + 1):
        if r not in picks:
            missing.append(r)
            if len(missing) > 8:
                break
    absent = ranks[-1] + 1 - len(ranks)
    notes = [
        f"{len(ranks)} ranks ({span}), {EXTENSIONS[fmt]} files, "
        + (
            "strategy " + ", ".join(os.path.relpath(p, folder) for p in strat.files)
            if strat
            else "no strategy file"
        )
    ]
    if missing:
        more = f" … ({absent} in all)" if absent > len(missing[:8]) else ""
        notes.append("no folder for " + ", ".join(f"rank_{r}" for r in missing[:8]) + more)
    several = [p for p in picks.values() if len(p.candidates) > 1 or not p.rule.startswith("MindSpore")]
    if several:
        chosen = sorted({os.path.basename(p.file) for p in several})
        counts = sorted({len(p.candidates) for p in several})
        files = "/".join(str(c) for c in counts)
        notes.append(
            f"rank folders hold {files} {EXTENSIONS[fmt]} files; using {', '.join(chosen[:3])}"
            f"{' …' if len(chosen) > 3 else ''} ({several[0].rule}; choose another with step= or file=)"
        )
        for p in several:
            newest = max(p.candidates, key=lambda c: (_numbers(os.path.basename(c))[-2:], c))
            if p.rule.startswith("MindSpore") and newest != p.file:
                notes.append(
                    f"rank_{p.rank}: by its numbers {os.path.basename(newest)} looks newer than "
                    f"{os.path.basename(p.file)}, which MindSpore picks"
                )
                break
        if len(chosen) > 1 and len({tuple(_numbers(c)[-2:]) for c in chosen}) > 1:
            notes.append("the ranks' chosen files are from different steps: " + ", ".join(chosen[:4]))
    if info.replica_ranks:
        who = ", ".join(f"rank_{r}" for r in info.replica_ranks[:4]) + (
            " …" if len(info.replica_ranks) > 4 else ""
        )
        if not strat:
            notes.append(
                f"data parallel: every rank holds the same tensors; shown once from rank_{ranks[0]} "
                f"({who} are replicas; check_replicas() compares their bytes; if the ranks hold slices, "
                "pass the strategy file)"
            )
        else:
            verb = "holds" if len(info.replica_ranks) == 1 else "hold"
            notes.append(
                f"{who} {verb} only copies of slices other ranks hold; check_replicas() compares them"
            )
    if info.inferred:
        names = list(info.inferred)
        notes.append(
            f"{len(names)} optimizer tensors are not in the strategy and follow their parameter's layout "
            f"({', '.join(names[:3])}{' …' if len(names) > 3 else ''})"
        )
    if replicated:
        notes.append(
            f"{len(replicated)} values not in the strategy are the same shape on every rank, read from the "
            f"lowest one ({', '.join(replicated[:3])}{' …' if len(replicated) > 3 else ''})"
        )
    return notes
