"""Index a remote checkpoint by range reads: one file (``.ckpt`` or ``.safetensors``) or a set of shards
named by a ``*.safetensors.index.json`` URL.

The same parsers as for local files run over remote bytes, so a malformed remote file gives the same
CheckpointError as a local one (named by its URL). Round trips are what costs: the first request reads
``FIRST_READ`` bytes (a whole safetensors header in the common case, as ``huggingface_hub`` reads one; a
``.ckpt``'s first entries); a ``.ckpt`` walk asks for the entry headers ``formats.prefetch`` predicts as
concurrent range requests, and reads runs of small entries in growing ranges; a set's shard headers are
requested all at once. A ``.ckpt`` index is saved (``index_cache``) under URL + validator: reopening an
unchanged object is its first request only.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from . import index_cache
from .errors import CheckpointError
from .formats import RawEntry, RawIndex
from .formats import ckpt as ckpt_format
from .formats import safetensors as st_format
from .formats.protowire import Malformed
from .formats.window import FileChanged, Window
from .remote import FIRST_READ, Cost, RemoteSource, Transport, is_url, redact, transport_for

_MAX_INDEX_BYTES = 256 << 20


class RemoteWindow(Window):
    """The ``.ckpt`` walk's window (``formats.window.Window``'s interface) over a remote object: a miss is one
    ranged request, growing while reads follow each other; ``fetch_ahead`` (the prefetcher's hook) requests
    predicted header ranges concurrently and keeps them until the walk passes them."""

    MIN = 16 << 10
    MAX = 1 << 20
    GAP = 16 << 10  # predicted ranges closer than this are read as one

    def __init__(self, source: RemoteSource, first: bytes) -> None:
        self.source = source
        self.path = source.display
        self.fd = -1
        self.size = source.size
        self.buf: bytes = first
        self.base = 0
        self.valid = len(first)
        self._next = self.MIN
        self._starts: list[int] = []  # prefetched blocks, by start
        self._blocks: list[bytes] = []

    def _held(self, pos: int, end: int) -> bool:
        """Serve ``[pos, end)`` from a prefetched block (dropping the blocks the walk has passed)."""
        while self._starts and self._starts[0] + len(self._blocks[0]) <= pos:
            self._starts.pop(0)
            self._blocks.pop(0)
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and end <= self._starts[i] + len(self._blocks[i]):
            self.buf, self.base, self.valid = self._blocks[i], self._starts[i], len(self._blocks[i])
            return True
        return False

    def _prefetched_range(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self._starts, lo) - 1
        return i >= 0 and hi <= self._starts[i] + len(self._blocks[i])

    def _load(self, pos: int, want: int) -> None:
        data = self.source.read(pos, pos + want) if want else b""
        self.buf, self.base, self.valid = data, pos, len(data)

    def fetch_ahead(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Request these byte ranges now, concurrently (``HeaderPrefetch``'s predictions)."""
        wanted: list[tuple[int, int]] = []
        for lo, hi in ranges:
            hi = min(hi, self.size)
            if lo >= hi or self.base <= lo < hi <= self.limit or self._prefetched_range(lo, hi):
                continue
            if wanted and lo - wanted[-1][1] <= self.GAP:  # a small gap costs less than another request
                wanted[-1] = (wanted[-1][0], max(hi, wanted[-1][1]))
            else:
                wanted.append((lo, hi))
        if not wanted:
            return
        for (lo, _), data in zip(wanted, self.source.read_many(wanted), strict=True):
            i = bisect.bisect_left(self._starts, lo)
            self._starts.insert(i, lo)
            self._blocks.insert(i, data)

    def check_unchanged(self) -> None:
        """Nothing to ask: every range was read with the validator as a precondition."""


class _KeyStat:
    """A stat-like object for ``index_cache``: the object's size; every other field 0 (the cache key names
    the validator)."""

    def __init__(self, size: int) -> None:
        self.st_size = size

    def __getattr__(self, name: str) -> int:
        if name.startswith("st_"):
            return 0
        raise AttributeError(name)


# --- one file -----------------------------------------------------------------------------------------------


def _first(source: RemoteSource, n: int = FIRST_READ) -> bytes:
    try:
        return source.first(n)
    except CheckpointError as exc:
        if "past the end" not in exc.problem:
            raise
    source.check_unchanged_size()  # an empty object has no first byte to ask for: ask its size
    return b""


def detect(source: RemoteSource, head: bytes) -> str:
    """``"ckpt"`` or ``"safetensors"`` from the first bytes, with the local reader's errors."""
    if source.size == 0:
        raise CheckpointError(source.display, "the file is empty")
    if st_format.detect(head[:16], source.size):
        return "safetensors"
    if ckpt_format.detect(head[:16]) is not None:
        return "ckpt"
    raise CheckpointError(
        source.display, "not a MindSpore checkpoint: neither a .ckpt protobuf nor a .safetensors file"
    )


def read_ckpt(source: RemoteSource, first: bytes) -> RawIndex:
    """A ``.ckpt``'s index: from the saved index when this URL + validator was walked before, else walked."""
    path, size = source.display, source.size
    key = source.cache_key()
    stat = _KeyStat(size)
    if key is not None:
        saved = index_cache.load(path, stat, key=key)  # type: ignore[arg-type]
        if saved is not None:
            entries, positions, crc, crc_end = saved
            return RawIndex("ckpt", entries, crc=crc, crc_end=crc_end, stamps={path: source.stamp},
                            positions=positions)  # fmt: skip
    head = first[:4]
    if head in ckpt_format.ENCRYPTED_MAGICS:
        raise CheckpointError(
            path,
            f"the checkpoint is encrypted ({ckpt_format.ENCRYPTED_MAGICS[head]}); pass the key to "
            "mindspore.load_checkpoint(..., dec_key=...) to read it",
        )
    win = RemoteWindow(source, first)
    try:
        entries, positions, crc, crc_end = ckpt_format._walk(win, size)  # type: ignore[arg-type]
    except Malformed as exc:
        raise CheckpointError(path, f"not a valid MindSpore checkpoint: {exc}") from None
    except FileChanged as exc:
        raise CheckpointError(path, str(exc)) from None
    ckpt_format._finish(path, entries)
    if key is not None:
        index_cache.save(path, stat, entries, crc, crc_end, key=key)  # type: ignore[arg-type]
    return RawIndex(
        "ckpt", entries, crc=crc, crc_end=crc_end, stamps={path: source.stamp}, positions=positions
    )


def safetensors_header(
    source: RemoteSource, first: bytes, file: str | None = None
) -> tuple[list[RawEntry], dict[str, str]]:
    """Entries and metadata of a remote ``.safetensors`` (a second request only for a header longer than
    ``first``), checked as the local reader checks them."""
    path, size = source.display, source.size
    if size < 8:
        raise CheckpointError(path, "truncated safetensors file (no header length)")
    n = int.from_bytes(first[:8], "little")
    if n > min(size - 8, st_format._MAX_HEADER):
        raise CheckpointError(path, f"safetensors header claims {n} bytes but the file has {size}")
    text = first[8 : 8 + n] if 8 + n <= len(first) else first[8:] + source.read(len(first), 8 + n)
    data_start = 8 + len(text)
    found = st_format._tight(text, data_start, size - data_start, file)
    if found is None:
        header = st_format._parse(path, text)
        found = st_format._careful(path, header, data_start, size, file)
    return found


def read_safetensors(source: RemoteSource, first: bytes) -> RawIndex:
    entries, metadata = safetensors_header(source, first)
    return RawIndex("safetensors", entries, metadata=metadata, stamps={source.display: source.stamp})


# --- a set of shards ----------------------------------------------------------------------------------------


def _shard_url(index_url: str, display: str, shard: str) -> str:
    """The URL of ``shard`` beside the index; a shard name may not leave the index's folder."""
    from urllib.parse import quote

    if shard.startswith("/") or "://" in shard or "\\" in shard or ".." in shard.split("/") or "\0" in shard:
        raise CheckpointError(display, f"the index names {shard!r}, outside the index's folder")
    base, query = [*index_url.split("?", 1), ""][:2]
    folder = base.rsplit("/", 1)[0]
    name = quote(shard, safe="/~") if base.lower().startswith(("http://", "https://")) else shard
    return f"{folder}/{name}" + (f"?{query}" if query else "")


def read_index_set(url: str, transport: Transport, cost: Cost) -> tuple[RawIndex, Any]:
    """A ``*.safetensors.index.json`` URL and the shards it names, their headers requested together."""
    from .sets.model import SetInfo
    from .sets.shards import _check_shard, natural_key, parse_weight_map

    index = RemoteSource(url, transport, cost)
    text = _first(index, 1 << 20)
    if index.size > _MAX_INDEX_BYTES:
        raise CheckpointError(index.display, f"an index of {index.size} bytes is too large")
    if index.size > len(text):
        text += index.read(len(text), index.size)
    weight_map, metadata = parse_weight_map(index.display, text)
    urls = {shard: _shard_url(url, index.display, shard) for shard in set(weight_map.values())}
    sources = {shard: RemoteSource(u, transport, cost) for shard, u in urls.items()}
    order = sorted(sources.values(), key=lambda s: natural_key(s.display.rsplit("/", 1)[-1]))
    expected = {name: sources[shard].display for name, shard in weight_map.items()}
    counts = Counter(expected.values())
    answers = transport.fetch_many(
        [(s.url, 0, FIRST_READ, None) for s in order], cost, return_exceptions=True
    )
    entries: list[RawEntry] = []
    stamps: dict[str, Any] = {index.display: index.stamp}
    listed_in: dict[str, set[str]] = {}
    seen: dict[str, list[str]] = {}
    stored: set[str] = set()
    unlisted: list[str] = []
    for source, answer in zip(order, answers, strict=True):
        shard = source.display
        if isinstance(answer, Exception):
            if "not found" in str(answer):
                raise CheckpointError(
                    index.display,
                    f"shard {shard.rsplit('/', 1)[-1]} (listed for {counts[shard]} tensors) is missing",
                )
            raise CheckpointError(shard, str(answer))
        first, meta = answer
        source.learn(meta)
        found, _ = safetensors_header(source, first, shard)
        stamps[shard] = source.stamp
        names = [e.name for e in found]
        exact = len(names) == counts[shard] and set(map(expected.get, names)) == {shard}
        if not exact:
            unlisted += _check_shard(shard, names, expected, stored, seen, listed_in)
        entries += found
        stored.update(names)
        seen[shard] = names
    notes = [
        f"{len(order)} shard{'s' if len(order) != 1 else ''} listed in {index.display.rsplit('/', 1)[-1]}"
    ]
    if unlisted:
        shown = ", ".join(repr(n) for n in unlisted[:3]) + (" ..." if len(unlisted) > 3 else "")
        notes.append(f"{len(unlisted)} tensors are in the shards but not in the index: {shown}")
    files = [index.display, *(s.display for s in order)]
    raw = RawIndex("safetensors", entries, metadata=metadata, files=files, stamps=stamps)
    return raw, SetInfo("shards", {}, notes)


# --- a folder of rank_N/ files -----------------------------------------------------------------------------


class RemoteFiles:
    """``sets.ranks.LocalFiles`` over URLs: folders listed through fsspec (S3 listings, an HTTP server's index
    page), rank files indexed and strategy files read by range requests. Each listing counts as a request."""

    def __init__(self, url: str, transport: Transport, cost: Cost) -> None:
        self.scheme = url.split("://", 1)[0].lower()
        self.transport = transport
        self.cost = cost
        self.fs: Any = getattr(transport, "fs", None)
        self._listed: dict[str, dict[str, str]] = {}
        self._stamps: dict[str, Any] = {}

    def _list(self, path: str) -> dict[str, str]:
        path = path.rstrip("/")
        if path not in self._listed:
            target = path + "/" if self.scheme in ("http", "https") else path
            self.cost.add(requests=1, rounds=1)
            try:
                found = self.fs.ls(target, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                found = []
            except Exception as exc:
                raise CheckpointError(
                    redact(path), f"cannot list the folder ({type(exc).__name__})"
                ) from None
            self._listed[path] = {
                e["name"].rstrip("/").rsplit("/", 1)[-1]: e.get("type", "file")
                for e in found
                if e["name"].rstrip("/") != path
            }
        return self._listed[path]

    def listdir(self, path: str) -> list[str]:
        return list(self._list(path))

    def isdir(self, path: str) -> bool:
        parent, _, name = path.rstrip("/").rpartition("/")
        return self._list(parent).get(name) == "directory"

    def isfile(self, path: str) -> bool:
        parent, _, name = path.rstrip("/").rpartition("/")
        return self._list(parent).get(name) == "file"

    def read_index(self, path: str, fmt: str) -> RawIndex:
        source = RemoteSource(path, self.transport, self.cost)
        first = _first(source)
        if source.size == 0:
            raise CheckpointError(source.display, "the file is empty")
        raw = read_ckpt(source, first) if fmt == "ckpt" else read_safetensors(source, first)
        self._stamps.update(raw.stamps)
        return raw

    def read_strategy(self, path: str, known: Any = None) -> Any:
        from .sets.strategy import _MAX_STRATEGY_BYTES, parse_strategy

        source = RemoteSource(path, self.transport, self.cost)
        buf = _first(source, 1 << 20)
        if source.size == 0:
            raise CheckpointError(source.display, "the strategy file is empty")
        if source.size > _MAX_STRATEGY_BYTES:
            raise CheckpointError(
                source.display, f"a strategy file of {source.size} bytes is too large to be one"
            )
        if source.size > len(buf):
            buf += source.read(len(buf), source.size)
        self._stamps[source.display] = source.stamp
        return parse_strategy(source.display, buf, known)

    def stamps(self) -> dict[str, Any]:
        return dict(self._stamps)


def read_rank_folder(
    url: str, transport: Transport, cost: Cost, strategy: Any, format: str | None, step: Any, file: Any
) -> tuple[RawIndex, Any]:
    """A folder URL of ``rank_N/`` files (and the strategy file: ``strategy=`` a URL, or found in it)."""
    from .sets.ranks import read_rank_set

    if isinstance(strategy, str) and not is_url(strategy):
        raise ValueError("strategy= of a remote set must be a URL as well")
    files = RemoteFiles(url, transport, cost)
    return read_rank_set(url.rstrip("/"), strategy=strategy, format=format, step=step, file=file,
                         files=files)  # type: ignore[arg-type]  # fmt: skip


# --- open ---------------------------------------------------------------------------------------------------


def open_remote(
    url: str,
    storage_options: dict[str, Any] | None = None,
    format: str | None = None,
    *,
    strategy: Any = None,
    step: Any = None,
    file: Any = None,
) -> Any:
    """A Checkpoint (or CheckpointSet) over the object at ``url`` (a folder URL ending in ``/``, or with
    ``strategy=`` a URL: a set of ``rank_N/`` files); ``ck.remote`` says where it is and what listing it cost
    (requests, round trips, bytes, seconds)."""
    from .index import FORMATS, Checkpoint, paused_gc

    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    cost = Cost()
    transport = transport_for(url, storage_options)
    t0 = time.perf_counter()
    ranks = url.endswith("/") or strategy is not None or step is not None or file is not None
    if ranks or redact(url).split("?")[0].endswith(".json"):
        from .sets.checkpoint_set import CheckpointSet

        if ranks:
            raw, info = read_rank_folder(url, transport, cost, strategy, format, step, file)
            path = redact(url).rstrip("/") + "/"  # a folder: its root is itself
        else:
            raw, info = read_index_set(url, transport, cost)
            path = redact(url)
        ck: Any = CheckpointSet.build(path, raw, info)
    else:
        source = RemoteSource(url, transport, cost)
        first = _first(source)
        fmt = format or detect(source, first)
        with paused_gc():
            raw = read_ckpt(source, first) if fmt == "ckpt" else read_safetensors(source, first)
            ck = Checkpoint.from_index(source.display, raw)
    ck.remote = {"url": redact(url), **cost.snapshot(), "wall_s": round(time.perf_counter() - t0, 4)}
    ck.remote_cost = cost
    return ck
