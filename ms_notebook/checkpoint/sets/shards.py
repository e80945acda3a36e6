"""Sets of whole tensors spread over several safetensors files.

- Hugging Face style: ``model.safetensors.index.json``
  (``{"metadata": {...}, "weight_map": {tensor: shard}}``) beside ``model-00001-of-0000N.safetensors``
  shards, or a folder of such shards without the index.
- MindFormers' merged layout, as ``mindspore.parallel.unified_safetensors`` writes it: ``param_name_map.json``
  (same shape as the index) beside ``partK.safetensors`` and ``hyper_param.safetensors``, which holds the
  values that were not cut (step counters, learning rate, ...) and is not listed in the map.

Each shard's header is read by the single-file reader; only headers are read. Shard names in an index must
stay inside the index's folder.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter

from ..errors import CheckpointError
from ..formats import RawEntry, RawIndex
from ..formats import safetensors as st_format
from ..formats.window import Stamp, read_regular
from .model import SetInfo

INDEX_SUFFIX = ".safetensors.index.json"
UNIFIED_MAP = "param_name_map.json"
HYPER_PARAMS = "hyper_param.safetensors"
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>[0-9]{1,9})-of-(?P<n>[0-9]{1,9})\.safetensors$")
_MAX_INDEX_BYTES = 64 << 20  # real indexes are a few MB; parsed JSON takes ~9x its bytes


def natural_key(name: str) -> list[tuple[int, int, str]]:
    """Sort key that orders ``part2`` before ``part10`` (runs of up to 18 ASCII digits count as numbers)."""
    return [
        (0, int(t), "") if t.isascii() and t.isdigit() and len(t) <= 18 else (1, 0, t)
        for t in re.split(r"([0-9]+)", name)
    ]


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):  # a key given twice: name the first one
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return out


class _Duplicate(Exception):
    pass


def read_weight_map(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(weight_map, metadata)`` of an index JSON file; CheckpointError for anything malformed."""
    text = read_regular(path, _MAX_INDEX_BYTES, "an index")
    return parse_weight_map(path, text)


def parse_weight_map(path: str, text: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """``read_weight_map`` of an index's bytes (``path`` names it in errors: a file or a URL)."""
    if len(text) > _MAX_INDEX_BYTES:
        raise CheckpointError(path, f"an index of {len(text)} bytes is too large")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        raise CheckpointError(path, f"the index lists {exc.args[0]!r} twice") from None
    except (ValueError, RecursionError) as exc:  # ValueError: bad UTF-8, bad JSON, over 4,300 digits
        raise CheckpointError(path, f"the index is not valid JSON ({exc})") from None
    if isinstance(data, dict) and "parallel_layout_item" in data:
        raise CheckpointError(
            path, "a parallel strategy file: open the folder of rank_N/ files (strategy= this file)"
        )
    if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
        raise CheckpointError(path, 'not a checkpoint index: no "weight_map" object')
    weight_map = data["weight_map"]
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(path, f"the index maps {name!r} to {shard!r}, not a file name")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {}
    return weight_map, {str(k): str(v) for k, v in metadata.items()}


def _shard_paths(index: str, weight_map: dict[str, str]) -> dict[str, str]:
    """Each tensor's shard path beside the index; a shard name may not leave the index's folder."""
    folder = os.path.dirname(os.path.abspath(index))
    paths = {}
    for shard in set(weight_map.values()):
        if os.path.isabs(shard) or "\\" in shard or ".." in shard.split("/") or "\0" in shard:
            raise CheckpointError(index, f"the index names {shard!r}, outside the index's folder")
        paths[shard] = os.path.join(folder, shard)
    return {name: paths[shard] for name, shard in weight_map.items()}


def _read_shards(
    shards: list[str], expected: dict[str, str] | None, origin: str
) -> tuple[list[RawEntry], list[str], dict[str, Stamp]]:
    """Headers of every shard; entries carry their shard's path. ``expected`` (name -> shard path) is the
    index's word, checked against the headers (with set operations: a set lists quickly). Returns the
    entries, notes and each shard's stamp (from the descriptor its header was read through)."""
    counts = Counter(expected.values() if expected is not None else ())  # shard -> names the index puts there
    listed_in: dict[str, set[str]] = {}  # shard -> the names the index puts there, made to explain
    entries: list[RawEntry] = []
    stamps: dict[str, Stamp] = {}
    seen: dict[str, list[str]] = {}  # shard -> its names, to name the other shard of a duplicate
    stored: set[str] = set()
    unlisted: list[str] = []
    for shard in shards:
        if not os.path.lexists(shard):  # a FIFO or device is refused by the header reader, never opened
            raise CheckpointError(
                origin, f"shard {os.path.basename(shard)} (listed for {counts[shard]} tensors) is missing"
            )
        found, _, stamps[shard] = st_format.read_header(shard, shard)
        names = [e.name for e in found]
        # the common case, in C: exactly the names the index puts here (and since the index gives each
        # name one shard, none of them is stored twice)
        exact = (
            expected is not None and len(names) == counts[shard] and set(map(expected.get, names)) == {shard}
        )
        if not exact:
            unlisted += _check_shard(shard, names, expected, stored, seen, listed_in)
        entries += found
        stored.update(names)
        seen[shard] = names
    notes = []
    if unlisted:
        shown = ", ".join(repr(n) for n in unlisted[:3]) + (" ..." if len(unlisted) > 3 else "")
        notes.append(f"{len(unlisted)} tensors are in the shards but not in the index: {shown}")
    return entries, notes, stamps


def _check_shard(
    shard: str,
    names: list[str],
    expected: dict[str, str] | None,
    stored: set[str],
    seen: dict[str, list[str]],
    listed_in: dict[str, set[str]],
) -> list[str]:
    """CheckpointError for a name of this shard stored before or put elsewhere by the index, or one the
    index puts here that it lacks; returns its names the index does not list."""
    held = set(names)
    twice = stored & held
    if twice:
        name = min(twice)
        other = os.path.basename(next(s for s, there in seen.items() if name in there))
        raise CheckpointError(shard, f"{name!r} is stored twice: in {other} and in {os.path.basename(shard)}")
    if expected is None:
        return []
    if not listed_in:
        for name, where in expected.items():
            listed_in.setdefault(where, set()).add(name)
    here = listed_in.get(shard, set())
    elsewhere = (held - here) & expected.keys()
    if elsewhere:
        name = min(elsewhere)
        raise CheckpointError(
            shard, f"{name!r} is stored here but the index puts it in {os.path.basename(expected[name])}"
        )
    lacking = here - held
    if lacking:
        raise CheckpointError(
            shard, f"the index puts {min(lacking)!r} in this shard, but the shard does not hold it"
        )
    return [name for name in names if name not in here]


def _set(
    kind: str,
    entries: list[RawEntry],
    files: list[str],
    metadata: dict[str, str],
    notes: list[str],
    stamps: dict[str, Stamp],
) -> tuple[RawIndex, SetInfo]:
    raw = RawIndex("safetensors", entries, metadata=metadata, files=files, stamps=stamps)
    return raw, SetInfo(kind, {}, notes)  # whole tensors: CheckpointSet.slices answers from each entry


def read_index_file(path: str) -> tuple[RawIndex, SetInfo]:
    """A ``*.safetensors.index.json`` or ``param_name_map.json`` and the shards it names."""
    path = os.path.abspath(path)
    weight_map, metadata = read_weight_map(path)
    expected = _shard_paths(path, weight_map)
    shards = sorted(set(expected.values()), key=lambda p: natural_key(os.path.basename(p)))
    unified = os.path.basename(path) == UNIFIED_MAP
    hyper = os.path.join(os.path.dirname(path), HYPER_PARAMS)
    if unified and os.path.isfile(hyper) and hyper not in shards:
        entries, notes, stamps = _read_shards(shards, expected, path)
        extra, _, more = _read_shards([hyper], None, path)
        stamps.update(more)
        names = {e.name for e in entries}
        for e in extra:
            if e.name in names:
                raise CheckpointError(hyper, f"{e.name!r} is also listed in {UNIFIED_MAP}")
        entries += extra
        files = [path, *shards, hyper]
        notes.append(f"{len(extra)} values not cut in training come from {HYPER_PARAMS}")
    else:
        entries, notes, stamps = _read_shards(shards, expected, path)
        files = [path, *shards]
    kind = "unified" if unified else "shards"
    notes.insert(
        0, f"{len(shards)} shard{'s' if len(shards) != 1 else ''} listed in {os.path.basename(path)}"
    )
    return _set(kind, entries, files, metadata, notes, stamps)


def find_index(folder: str) -> str | None:
    """The index file of a folder of shards (``param_name_map.json`` or one ``*.safetensors.index.json``)."""
    names = os.listdir(folder)
    if UNIFIED_MAP in names:
        return os.path.join(folder, UNIFIED_MAP)
    indexes = sorted(n for n in names if n.endswith(INDEX_SUFFIX) and not n.startswith("."))
    if len(indexes) > 1:
        raise CheckpointError(folder, f"holds several indexes ({', '.join(indexes)}): open the one you mean")
    return os.path.join(folder, indexes[0]) if indexes else None


def shard_files(folder: str) -> list[str]:
    """The ``.safetensors`` files of a folder (not hidden), in natural order."""
    return sorted(
        (n for n in os.listdir(folder) if n.endswith(".safetensors") and not n.startswith(".")),
        key=natural_key,
    )


def read_shard_folder(folder: str) -> tuple[RawIndex, SetInfo]:
    """A folder of shards without an index: ``name-0000i-of-0000N.safetensors`` (all N must be there), or
    else every ``.safetensors`` file in it."""
    folder = os.path.abspath(folder)
    names = shard_files(folder)
    groups: dict[tuple[str, int], dict[int, str]] = {}
    for n in names:
        m = _SHARD.match(n)
        if m:
            groups.setdefault((m["stem"], int(m["n"])), {})[int(m["i"])] = n
    notes = []
    if groups:
        if len(groups) > 1:
            kinds = ", ".join(f"{stem}-*-of-{total:05d}" for stem, total in groups)
            raise CheckpointError(folder, f"holds several sets of shards ({kinds}): open one's index file")
        (stem, total), found = next(iter(groups.items()))
        width = len(next(iter(found.values())).rsplit("-of-", 1)[1]) - len(".safetensors")
        inside = sum(1 for i in found if 1 <= i <= total)
        if inside < total:  # counted from the files present: a name's numbers cost no memory or time
            first_missing = next(i for i in range(1, total + 1) if i not in found)
            first = f"{stem}-{first_missing:0{width}d}-of-{total:0{width}d}.safetensors"
            raise CheckpointError(
                folder, f"shard {first} is missing ({total - inside:,} of {total:,} shards missing)"
            )
        chosen = [found[i] for i in range(1, total + 1)]
        kept = set(chosen)
        others = [n for n in names if n not in kept]
        if others:
            notes.append(f"not part of the shards, left out: {', '.join(others)}")
    else:
        chosen = names
    if not chosen:
        raise CheckpointError(folder, "holds no .safetensors files")
    shards = [os.path.join(folder, n) for n in chosen]
    entries, more, stamps = _read_shards(shards, None, folder)
    notes.insert(0, f"{len(shards)} shards, no index file")
    return _set("shards", entries, shards, {}, notes + more, stamps)
