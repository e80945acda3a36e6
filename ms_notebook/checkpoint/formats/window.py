"""Positioned reads of a file being indexed, through one small reusable buffer.

Why not ``mmap``: a file truncated under a memory map raises SIGBUS in the reading process (in the Jupyter
server, the whole server), and a forward walk over a map of a cold file makes the kernel read ahead nearly
all of it. ``os.pread`` just returns fewer bytes, and with readahead switched off (``POSIX_FADV_RANDOM`` on
our own descriptor) it reads only the pages asked for: a few per entry header.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import CheckpointError

Stamp = tuple[int, int, int, int]  # (size, mtime_ns, inode, ctime_ns): what "the same file" means
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


class FileChanged(Exception):
    """Internal: the file shrank, grew or was replaced while it was read (the caller names the file)."""


def stamp_of(st: os.stat_result) -> Stamp:
    """Size, mtime, inode and ctime: ctime catches a same-size rewrite whose mtime was put back."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def read_regular(path: str, limit: int, what: str) -> bytes:
    """The whole of a small regular file (an index, a strategy), refused over ``limit`` bytes before a byte
    is read; never more than ``limit`` bytes even if the file grows meanwhile."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise CheckpointError(path, f"{what} of {size:,} bytes is too large (at most {limit:,})")
        parts, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        if total > limit:
            raise CheckpointError(path, f"{what} grew past {limit:,} bytes while it was read")
        return b"".join(parts)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a folder" if stat.S_ISDIR(mode) else "a special file"


class OutsideRoot(CheckpointError):
    """A file to be opened lies outside the folder reads are confined to, or is hidden there."""


_ROOT: ContextVar[tuple[str, bool] | None] = ContextVar("ms_notebook_confined_root", default=None)


@contextmanager
def confined(root: str, allow_hidden: bool = False) -> Iterator[None]:
    """Within this block (this thread or task), every file opened must resolve inside ``root`` and, unless
    ``allow_hidden``, have no hidden (dot) folder or name below it: checked before the file is opened, so
    nothing outside is ever read (the server's root)."""
    token = _ROOT.set((os.path.realpath(root), allow_hidden))
    try:
        yield
    finally:
        _ROOT.reset(token)


def _check_confined(path: str) -> None:
    confinement = _ROOT.get()
    if confinement is None:
        return
    root, allow_hidden = confinement
    real = os.path.realpath(path)
    if os.path.commonpath([real, root]) != root:
        raise OutsideRoot(path, "lies outside the server root")
    rel = os.path.relpath(real, root)
    if not allow_hidden and rel != "." and any(part.startswith(".") for part in rel.split(os.sep)):
        raise OutsideRoot(path, "is a hidden file")


def open_regular(path: str) -> int:
    """A read-only descriptor on ``path``, which must be a regular file: a FIFO, device or socket is a
    CheckpointError (opened without blocking, so a FIFO with no writer cannot hang the caller). Inside
    ``confined(root)`` the file must also resolve inside ``root``."""
    _check_confined(path)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CheckpointError(path, f"is {_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Window:
    """The bytes of ``[base, base + valid)`` of an open file; ``cover`` moves or widens it as needed.

    Reads grow (up to ``MAX``) while they follow each other closely, so a file of many tiny entries is read
    in large sequential blocks, and shrink back to ``MIN`` after a jump over a large tensor.
    """

    MIN = 256
    MAX = 1 << 20

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.stat = os.fstat(fd)  # as opened: the identity a saved index is checked against
        self.stamp: Stamp = stamp_of(self.stat)
        self.size = self.stamp[0]
        self.buf = bytearray(self.MIN)
        self.base = 0
        self.valid = 0
        self._next = self.MIN

    @property
    def limit(self) -> int:
        """File offset just past the valid bytes."""
        return self.base + self.valid

    def cover(self, pos: int, n: int) -> tuple[bytearray, int]:
        """Make file bytes ``[pos, pos + n)`` (clipped to the file) valid; returns ``(buffer, base)``.

        Only ``[base, limit)`` of the buffer is valid: bytes past it are left over from earlier reads.
        """
        end = min(pos + n, self.size)
        if (self.base <= pos and end <= self.base + self.valid) or self._held(pos, end):
            return self.buf, self.base
        sequential = self.base <= pos <= self.base + self.valid + 4096  # inside or just after this window
        self._next = min(self._next * 2, self.MAX) if sequential else self.MIN
        want = min(max(n, self._next), self.size - pos)
        if want < 0:
            raise FileChanged(f"byte {pos} is past the end of the file")
        self._load(pos, want)
        return self.buf, self.base

    def _held(self, pos: int, end: int) -> bool:
        """Whether ``[pos, end)`` is held elsewhere (then made the window); a file window holds no more."""
        return False

    def _load(self, pos: int, want: int) -> None:
        """Make the window ``want`` bytes of the file from ``pos``."""
        if len(self.buf) < want:
            self.buf = bytearray(max(want, 2 * len(self.buf)))
        got = os.preadv(self.fd, [memoryview(self.buf)[:want]], pos) if want else 0
        if got != want:
            raise FileChanged("the file ended early: it was truncated while it was being read")
        self.base, self.valid = pos, want

    def byte(self, pos: int) -> int:
        if pos >= self.size:
            raise FileChanged(f"byte {pos} is past the end of the file")
        buf, base = self.cover(pos, 1)
        return buf[pos - base]

    __getitem__ = byte  # a window reads like the bytes of the whole file (protowire.varint)

    def read(self, pos: int, n: int) -> bytes:
        """``n`` bytes at ``pos`` (fewer only at the end of the file)."""
        buf, base = self.cover(pos, n)
        start = pos - base
        return bytes(buf[start : start + min(n, self.size - pos)])

    def check_unchanged(self) -> None:
        """FileChanged when the file now differs from when it was opened (resized, rewritten, replaced)."""
        try:
            now = stamp_of(os.stat(self.path))
        except FileNotFoundError:
            raise FileChanged("the file was removed while it was being read") from None
        if stamp_of(os.fstat(self.fd)) != self.stamp or now != self.stamp:
            raise FileChanged("the file changed while it was being read; open it again")


@contextmanager
def open_for_index(path: str) -> Iterator[Window]:
    """A Window over ``path`` with the kernel's readahead off for this descriptor only."""
    fd = open_regular(path)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        yield Window(fd, path)
    finally:
        os.close(fd)
