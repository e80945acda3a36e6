"""A saved copy of a ``.ckpt`` file's index, so that reopening a file already indexed once is one small read.

One cache file per checkpoint, named by a hash of its real path, holding the real path and the checkpoint's
identity (device, inode, size, mtime and ctime: ctime catches a rewrite whose mtime was put back). It is
used only when the open checkpoint's ``fstat`` matches all of them, and only after everything in it has been
checked against the file size (spans inside the file, byte counts matching shapes, every array as long as it
says); anything doubtful, unreadable or from another version is ignored, and the caller walks the file again.
A file changed in the last ``SETTLE_S`` seconds is not saved (as git treats "racy" index entries): any later
change then gives it a new ctime, whatever the granularity of its file system's clock.

Layout: ``MAGIC``, the header's length (8 bytes, little-endian), a JSON header (identity, entry counts, the
distinct shapes, types and kinds, crc), then the body: fixed-type little-endian arrays in a fixed order and
the names joined by NUL, and last an HMAC-SHA256 of everything before it, keyed with a per-user secret
(``secret.key``, 32 random bytes, 0600) kept in the folder. Never pickled.

Trust: the folder must be a folder owned by this user that no one else can write (it is made 0700); a saved
index is read only if it is a regular file owned by this user, not writable by group or others, and its HMAC
matches: a file another user planted, or an entry edited with its checksums recomputed, is ignored. Clean-up
removes only files with the cache's own name patterns (``<32 hex>.idx``, ``.msnb-*.tmp``) owned by this user.

Folder: ``$MS_NOTEBOOK_INDEX_CACHE`` (``0``, ``off``, ``none`` or empty: no cache), else
``$XDG_CACHE_HOME/ms-notebook/index``, else ``~/.cache/ms-notebook/index``; at most ``MAX_FILES`` files and
``MAX_BYTES`` bytes, the least recently used removed first. A folder that cannot be written means no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .dtypes import STRING, numpy_dtype
from .formats import RawEntry

MAGIC = b"MSNBIDX2"
VERSION = 2
SECRET = "secret.key"
MAC_BYTES = 32
_ENTRY = re.compile(r"[0-9a-f]{32}\.idx")
_TMP_PREFIX = ".msnb-"
_TEMPORARY = re.compile(r"\.msnb-[A-Za-z0-9_]+\.tmp")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
SUFFIX = ".idx"
MIN_ENTRIES = 128  # smaller files are walked in a few milliseconds: no cache file for them
MAX_FILES = 256
MAX_BYTES = 256 << 20
# a file changed this recently is not saved: a change within its timestamps' granularity (a few ms, or seconds
# on some file systems) would keep the same mtime and ctime, and the saved index would outlive the change
SETTLE_S = 2.0
CHUNK = 1 << 16  # entries converted at a time
TABLES = ("shape", "dtype", "kind")  # arrays of ids into the header's tables of distinct values
KINDS = ("tensor", STRING, "maptensor")

# the body: (name, dtype, length in units of "entries" or "extra" spans' numbers), in this order
_ARRAYS = (
    ("offset", "<i8", "entries"),  # first span's offset
    ("nbytes", "<i8", "entries"),
    ("extra", "<i8", "extra"),  # (offset, length) pairs of every span of entries with more than one
    ("shape", "<u4", "entries"),  # index into the header's shapes
    ("spans", "<u4", "entries"),  # number of spans
    ("dtype", "<u2", "entries"),  # index into the header's dtypes
    ("kind", "<u1", "entries"),  # index into the header's kinds
)

Identity = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns
Cached = tuple[list[RawEntry], dict[str, int], int | None, int]  # entries, name -> position, crc, crc_end


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cache_dir() -> Path | None:
    """The cache folder, or None when the environment switches the cache off."""
    explicit = os.environ.get("MS_NOTEBOOK_INDEX_CACHE")
    if explicit is not None:
        if explicit.strip().lower() in ("", "0", "off", "none"):
            return None
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative (which the XDG spec says to ignore)
        base = os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):  # no home to be found: no cache, rather than a "~" folder wherever we are
        return None
    return Path(base) / "ms-notebook" / "index"


def cache_file(path: str, key: str | None = None) -> Path | None:
    """Where the saved index of the checkpoint at ``path`` lives (None: cache off); ``key`` names a remote
    object instead of ``path``'s real path (its URL and validator)."""
    folder = cache_dir()
    if folder is None:
        return None
    real = key if key is not None else os.path.realpath(path)
    return folder / (hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32] + SUFFIX)


# --- trust --------------------------------------------------------------------------------------------------


def _ours(st: os.stat_result, private: int = 0o022) -> bool:
    """Owned by this user, and none of the ``private`` mode bits set (default: no one else may write)."""
    return st.st_uid == os.geteuid() and not st.st_mode & private


def _private_folder(folder: Path, create: bool) -> bool:
    """Whether ``folder`` is a folder of this user's that no one else can write (made 0700 when asked)."""
    if create:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and _ours(st)


def secret_key(folder: Path, create: bool = True) -> bytes | None:
    """The per-user key that signs saved indexes (made once, 0600, in the folder); None if it cannot be had
    or is not this user's alone."""
    where = folder / SECRET
    try:
        fd = os.open(where, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        if not create:
            return None
        try:
            fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        except FileExistsError:  # made meanwhile by another process
            return secret_key(folder, create=False)
        key = os.urandom(MAC_BYTES)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or not _ours(st, 0o077):
            return None
        key = f.read(MAC_BYTES + 1)
    return key if len(key) == MAC_BYTES else None


# --- loading ------------------------------------------------------------------------------------------------


def load(path: str, st: os.stat_result, key: str | None = None) -> Cached | None:
    """The saved index of ``path`` when one exists for exactly this file (``st``: ``fstat`` of the open
    checkpoint), is this user's and passes every check; None otherwise (the caller walks the file)."""
    try:
        where = cache_file(path, key)
        if where is None or not _private_folder(where.parent, create=False):
            return None
        secret = secret_key(where.parent, create=False)
        if secret is None:
            return None
        fd = os.open(where, os.O_RDONLY | _NOFOLLOW)  # a link or FIFO planted here is never followed
        with os.fdopen(fd, "rb") as f:
            own = os.fstat(fd)
            if not stat.S_ISREG(own.st_mode) or not _ours(own) or own.st_size > MAX_BYTES:
                return None
            cached = _read(f, key if key is not None else os.path.realpath(path), st, secret)
    except Exception:  # a saved index is only ever a shortcut: any doubt means walking the file
        return None
    if cached is not None:
        with contextlib.suppress(OSError):
            os.utime(where)  # recently used: the last to be removed when the folder is full
    return cached


def _read(f: BinaryIO, real: str, st: os.stat_result, key: bytes | None = None) -> Cached | None:
    """Parse and check a saved index (arrays and names read separately: the names' bytes are freed once
    decoded, before the entries are made). ``key``: the signing key (default: the cache folder's)."""
    if key is None:
        folder = cache_dir()
        key = secret_key(folder, create=False) if folder is not None else None
        if key is None:
            return None
    mac = hmac.new(key, digestmod=hashlib.sha256)
    head = f.read(len(MAGIC) + 8)
    if head[: len(MAGIC)] != MAGIC or len(head) != len(MAGIC) + 8:
        return None
    length = int.from_bytes(head[len(MAGIC) :], "little")
    if length > 1 << 26:
        return None
    text = f.read(length)
    mac.update(head)
    mac.update(text)
    header = json.loads(text)
    if header.get("version") != VERSION or header.get("path") != real:
        return None
    if tuple(header["identity"]) != identity(st):
        return None
    size = st.st_size
    n, n_extra = header["entries"], header["extra"]
    crc, crc_end = header["crc"], header["crc_end"]
    if not (type(n) is int and type(n_extra) is int and n > 0 and n_extra >= 0 and n_extra % 2 == 0):
        return None
    if not (type(crc_end) is int and 0 <= crc_end <= size and (crc is None or type(crc) is int)):
        return None
    if crc is None and crc_end != size:
        return None
    counts = [n if unit == "entries" else n_extra for _, _, unit in _ARRAYS]
    width = sum(np.dtype(layout).itemsize * k for (_, layout, _), k in zip(_ARRAYS, counts, strict=True))
    if width > size * 64:  # far more than any index of a file this size (the read below stays bounded)
        return None
    body = f.read(width)
    blob = f.read()
    if len(body) != width or len(blob) < MAC_BYTES:
        return None
    mac.update(body)
    mac.update(memoryview(blob)[:-MAC_BYTES])
    if not hmac.compare_digest(mac.digest(), blob[-MAC_BYTES:]):
        return None  # not signed with this user's key: planted, edited or damaged
    blob = blob[:-MAC_BYTES]
    arrays: dict[str, np.ndarray] = {}
    pos = 0
    for (name, dtype, _), count in zip(_ARRAYS, counts, strict=True):
        arrays[name] = np.frombuffer(body, dtype, count, pos)
        pos += arrays[name].nbytes
    names = str(blob, "utf-8").split("\0")
    del blob
    shapes = [tuple(s) for s in header["shapes"]]
    dtypes, kinds = header["dtypes"], header["kinds"]
    if len(names) != n or not _tables_ok(shapes, dtypes, kinds):
        return None
    positions = dict(zip(names, range(n), strict=True))  # the Checkpoint's name lookup, as the walk hands on
    if len(positions) != n or not _arrays_ok(arrays, shapes, dtypes, kinds, crc_end):
        return None  # a name twice, or an array that does not fit the file
    return _entries(names, arrays, shapes, dtypes, kinds), positions, crc, crc_end


def _tables_ok(shapes: list[tuple], dtypes: list, kinds: list) -> bool:
    return (
        all(type(d) is int and d >= 0 for s in shapes for d in s)
        and all(type(d) is str for d in dtypes)
        and all(k in KINDS for k in kinds)
        and 0 < len(kinds) <= len(KINDS)
        and 0 < len(dtypes) < 1 << 16
    )


def _arrays_ok(a: dict[str, np.ndarray], shapes: list[tuple], dtypes: list, kinds: list, end: int) -> bool:
    """Every id inside its table, every span inside the file, byte counts adding up and matching shapes, as
    the walk's own checks would have them."""
    offset, nbytes, spans, extra = a["offset"], a["nbytes"], a["spans"], a["extra"]
    if len(shapes) == 0 or int(a["shape"].max()) >= len(shapes) or int(a["dtype"].max()) >= len(dtypes):
        return False
    if int(a["kind"].max()) >= len(kinds) or int(spans.min()) < 1:
        return False
    if (offset < 0).any() or (nbytes < 0).any() or (offset > end - nbytes).any():
        return False
    multi = spans > 1
    if int(spans[multi].sum()) * 2 != len(extra):
        return False
    if len(extra):
        starts, lengths = extra[0::2], extra[1::2]
        if (starts < 0).any() or (lengths < 0).any() or (starts > end - lengths).any():
            return False
        owner = np.repeat(np.flatnonzero(multi), spans[multi])  # the entry each extra span belongs to
        totals = np.zeros(len(nbytes), np.int64)
        np.add.at(totals, owner, lengths)
        firsts = np.searchsorted(owner, np.flatnonzero(multi))
        if not np.array_equal(totals[multi], nbytes[multi]):
            return False
        if not np.array_equal(starts[firsts], offset[multi]):
            return False
    # what _finish checks: a tensor holds numel * itemsize bytes; a string is UTF-32 with shape ()
    cap = end + 1  # more elements than the file has bytes cannot match: keeps the products inside int64
    numel = np.array([min(_numel(s), cap) for s in shapes], np.int64)
    item = np.array([_itemsize(d) for d in dtypes], np.int64)
    kind_of = np.array([KINDS.index(k) for k in kinds], np.int8)[a["kind"]]
    tensor = kind_of == 0
    if (item[a["dtype"][tensor]] == 0).any():
        return False
    if not np.array_equal(numel[a["shape"][tensor]] * item[a["dtype"][tensor]], nbytes[tensor]):
        return False
    string = kind_of == 1
    empty = np.array([len(s) == 0 for s in shapes], bool)
    text = np.array([d == STRING for d in dtypes], bool)
    return bool(
        empty[a["shape"][string]].all() and text[a["dtype"][string]].all() and not (nbytes[string] % 4).any()
    )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _itemsize(ms_dtype: str) -> int:
    dtype = numpy_dtype(ms_dtype)
    return 0 if dtype is None else dtype.itemsize


def _entries(
    names: list[str], a: dict[str, np.ndarray], shapes: list, dtypes: list, kinds: list
) -> list[RawEntry]:
    """The RawEntry list, sharing one object per distinct shape and type as the walk does (made a chunk at a
    time: the Python ints and lists in between stay small)."""
    tables = [_objects(shapes), _objects(dtypes), _objects(kinds)]  # in the order of TABLES
    entries: list[RawEntry] = []
    for i in range(0, len(names), CHUNK):
        part = slice(i, i + CHUNK)
        shape, dtype, kind = (table[a[k][part]].tolist() for table, k in zip(tables, TABLES, strict=True))
        # one span: its offset alone, as the walk stores it
        entries += map(RawEntry, names[part], shape, dtype, kind, a["offset"][part].tolist(),
                       a["nbytes"][part].tolist())  # fmt: skip
    counts = a["spans"]
    if len(a["extra"]):
        pairs = a["extra"].tolist()
        i = 0
        for at, count in zip(np.flatnonzero(counts > 1).tolist(), counts[counts > 1].tolist(), strict=True):
            run = pairs[i : i + 2 * count]
            entries[at].spans = list(zip(run[0::2], run[1::2], strict=True))  # a list, as add_span makes
            i += 2 * count
    return entries


def _objects(table: list) -> np.ndarray:
    """``table`` as a NumPy object array, to pick from with an array of ids."""
    objects = np.empty(len(table), object)
    objects[:] = table
    return objects


# --- saving -------------------------------------------------------------------------------------------------


def save(
    path: str, st: os.stat_result, entries: list[RawEntry], crc: int | None, crc_end: int,
    key: str | None = None,
) -> None:
    """Save the index of ``path`` (``st``: ``fstat`` of the checkpoint when it was walked); silently nothing
    when the cache is off, the file too small to be worth it, or the folder not writable or not ours."""
    if len(entries) < MIN_ENTRIES or time.time() - max(st.st_mtime, st.st_ctime) < SETTLE_S:
        return
    try:
        where = cache_file(path, key)
        if where is None or not _private_folder(where.parent, create=True):
            return
        secret = secret_key(where.parent)
        if secret is None:
            return
        pieces = _serialise(key if key is not None else os.path.realpath(path), st, entries, crc, crc_end)
        if pieces is None:
            return
        fd, tmp = tempfile.mkstemp(dir=where.parent, prefix=_TMP_PREFIX, suffix=".tmp")  # mode 0o600
        try:
            mac = hmac.new(secret, digestmod=hashlib.sha256)
            with os.fdopen(fd, "wb") as f:
                for piece in pieces:
                    f.write(piece)
                    mac.update(piece)
                f.write(mac.digest())
            os.replace(tmp, where)
        except BaseException:
            os.unlink(tmp)
            raise
        _trim(where.parent, keep=where)
    except (OSError, ValueError, OverflowError):
        pass


def _serialise(
    real: str, st: os.stat_result, entries: list[RawEntry], crc: int | None, crc_end: int
) -> list | None:
    """The saved index as pieces to write one after the other (never joined: a million entries' index is
    tens of MB), or None for entries it cannot hold (a name with NUL)."""
    n = len(entries)
    arrays = {name: np.empty(n, dtype) for name, dtype, unit in _ARRAYS if unit == "entries"}
    ids: dict[str, dict] = {k: {} for k in TABLES}  # value -> its index in the header's table
    extra: list[int] = []
    names: list[bytes] = []
    for i in range(0, n, CHUNK):
        chunk = entries[i : i + CHUNK]
        part = slice(i, i + len(chunk))
        text = "\0".join([e.name for e in chunk])
        if text.count("\0") != len(chunk) - 1:
            return None
        names += (text.encode("utf-8"), b"\0")
        arrays["shape"][part] = _ids([e.shape for e in chunk], ids["shape"])
        arrays["dtype"][part] = _ids([e.ms_dtype for e in chunk], ids["dtype"])
        arrays["kind"][part] = _ids([e.kind for e in chunk], ids["kind"])
        spans = [e.stored_spans for e in chunk]  # an offset alone for one span of nbytes, else pairs
        arrays["spans"][part] = [1 if type(s) is int else len(s) for s in spans]
        counts = arrays["spans"][part]
        arrays["offset"][part] = [s if type(s) is int else s[0][0] for s in spans]
        arrays["nbytes"][part] = [e.nbytes for e in chunk]
        extra += [x for j in np.flatnonzero(counts > 1).tolist() for span in spans[j] for x in span]
    if len(ids["dtype"]) >= 1 << 16:
        return None
    arrays["extra"] = np.array(extra, "<i8")
    pieces = [arrays[name] for name, _, _ in _ARRAYS] + names[:-1]
    header = json.dumps({
        "version": VERSION, "path": real, "identity": identity(st),
        "entries": n, "extra": len(extra), "shapes": list(ids["shape"]), "dtypes": list(ids["dtype"]),
        "kinds": list(ids["kind"]), "crc": crc, "crc_end": crc_end,
    }).encode()  # fmt: skip
    header += b" " * (-(len(MAGIC) + 8 + len(header)) % 8)  # the arrays start 8-aligned
    return [MAGIC + len(header).to_bytes(8, "little") + header, *pieces]


def _ids(values: list, table: dict) -> np.ndarray:
    """Each value's index in ``table`` (value -> index, grown as new values come). The walk shares one object
    per distinct value, so objects are told apart by identity first, at NumPy's speed, then looked up."""
    keys = np.fromiter(map(id, values), np.uint64, len(values))
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    known = np.array([table.setdefault(values[i], len(table)) for i in first.tolist()], np.int64)
    return known[inverse.reshape(-1)]


def _trim(folder: Path, keep: Path) -> None:
    """Remove the least recently used cache files while there are more than MAX_FILES or MAX_BYTES (and
    temporary files a killed process left, after a day). Only this user's files named as the cache names
    them are touched."""
    files = []
    stale = time.time() - 86400
    for p in folder.iterdir():
        temporary = _TEMPORARY.fullmatch(p.name) is not None
        if p == keep or not (temporary or _ENTRY.fullmatch(p.name)):
            continue
        try:
            st = p.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            if temporary:
                if st.st_mtime < stale:
                    p.unlink()
                continue
        except OSError:
            continue
        files.append((st.st_mtime_ns, st.st_size, p))
    total = sum(size for _, size, _ in files) + keep.stat().st_size
    count = len(files) + 1
    files.sort()
    for _, size, p in files:
        if count <= MAX_FILES and total <= MAX_BYTES:
            break
        try:
            p.unlink()
        except OSError:
            continue
        count -= 1
        total -= size
