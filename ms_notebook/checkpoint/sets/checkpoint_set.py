"""``CheckpointSet``: a Checkpoint over several files, plus what only a set has (slices, replicas, merge)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError
from ..formats import RawIndex
from ..formats.window import open_regular
from ..index import Checkpoint
from .model import Holder, RankFile, SetInfo, Slice, sub_spans

KINDS = {
    "shards": "safetensors shards",
    "ranks": "per-rank files of a distributed run",
    "unified": "MindFormers unified safetensors",
}
_COMPARE_CHUNK = 4 << 20

Progress = Callable[[float, str], None]


@dataclass
class ReplicaCheck:
    """Whether every copy of every slice held by several ranks has the same bytes as the copy shown."""

    compared: int = 0  # slices with more than one copy
    bytes_read: int = 0
    differing: dict[str, list[int]] = field(default_factory=dict)  # name -> ranks whose copy differs

    @property
    def identical(self) -> bool:
        return not self.differing

    def describe(self) -> str:
        if not self.compared:
            return "no slice is held by more than one rank"
        if self.identical:
            return f"replicas are byte-identical ({self.compared} slices compared)"
        names = list(self.differing)
        return (
            f"replicas differ in {len(names)} of {self.compared} slices "
            f"({', '.join(names[:3])}{' …' if len(names) > 3 else ''})"
        )


class CheckpointSet(Checkpoint):
    """A checkpoint stored as several files: shards of whole tensors, or per-rank slices with a strategy.

    It is a :class:`Checkpoint` (mapping, tree, stats, DataFrame, compare, diff, TransferPlan all work) whose
    shapes are the full shapes; ``ck[name]`` assembles a sliced value. Besides: ``kind``, ``notes`` (what was
    chosen and why), ``slices(name)`` (which ranks or files hold which box), ``rank_files`` and
    ``check_replicas()``. Merging into one file is ``ms_notebook.merge(ck, dst)`` (MindSpore glue, in
    ``transfer/merge.py``: the index never imports that layer).
    """

    kind: str
    notes: list[str]
    strategy: tuple[str, ...]
    rank_files: dict[int, RankFile]
    replica_ranks: list[int]

    @classmethod
    def build(cls, path: str, raw: RawIndex, info: SetInfo) -> CheckpointSet:
        """The set over ``raw`` (from a set reader) and what the reader learnt about it."""
        self = cls.from_index(path, raw)
        assert isinstance(self, CheckpointSet)
        self._info = info
        self.kind = info.kind
        self.notes = info.notes
        self.strategy = info.strategy
        self.rank_files = info.rank_files
        self.replica_ranks = info.replica_ranks
        self._replicas: ReplicaCheck | None = None
        ordered = self.tree_order()  # entries and DataFrame as the tree lists them, not in shard order
        if len(ordered) == len(self.entries):
            self.entries = list(ordered)
        return self

    @property
    def root(self) -> str:
        """The folder the set's files are named relative to."""
        return self.path if os.path.isdir(self.path) else os.path.dirname(self.path)

    def slices(self, name: str) -> list[Slice]:
        """The boxes of the full value of ``name`` and who holds each (ranks, or the shard file)."""
        parts = self._info.slices.get(name)
        if parts is None:  # a whole tensor in one shard
            e = self._by_name[name]
            whole = tuple((0, d) for d in e.shape)
            parts = [Slice(whole, (Holder(e.file or self.path, tuple(e.spans)),))]
        return parts

    def layout(self, name: str) -> Any:
        """The strategy layout ``name`` was cut by (None for whole values); see ``inferred_from``."""
        return self._info.layouts.get(name)

    def inferred_from(self, name: str) -> str | None:
        """The parameter whose layout an optimizer tensor follows when the strategy does not name it."""
        return self._info.inferred.get(name)

    # replicas ---
    @property
    def replicas(self) -> ReplicaCheck | None:
        """The result of :meth:`check_replicas`, or None until it has run."""
        return self._replicas

    def check_replicas(self, progress: Progress | None = None) -> ReplicaCheck:
        """Compare every extra copy of a slice with the copy shown, in bounded chunks (stops at the first
        differing chunk of a slice). Reads all replica bytes once, so it runs only when asked; cached."""
        if self._replicas is not None:
            return self._replicas
        self._check_unchanged()
        result = ReplicaCheck()
        work = [(name, s) for name, parts in self._info.slices.items() for s in parts if len(s.holders) > 1]
        total = sum(_length(s.holders[0]) * (len(s.holders) - 1) for _, s in work) or 1
        done = 0
        fds: dict[str, int] = {}
        try:
            for name, s in work:
                result.compared += 1
                first = s.holders[0]
                length = _length(first)
                for other in s.holders[1:]:
                    if _length(other) != length or not _same_bytes(first, other, fds, result):
                        result.differing.setdefault(name, []).append(
                            other.rank if other.rank is not None else -1
                        )
                    done += length
                    if progress is not None:
                        progress(done / total, f"compared {name}")
        finally:
            for fd in fds.values():
                os.close(fd)
        self._replicas = result
        self.notes.append(result.describe())
        return result

    # text ---
    def summary(self, depth: int | None = 2, group: str | None = None) -> str:
        lines = super().summary(depth, group).split("\n")
        extra = [f"  set: {KINDS.get(self.kind, self.kind)}, {len(self.files)} files"]
        extra += [f"  · {note}" for note in self.notes]
        return "\n".join([lines[0], *extra, *lines[1:]])

    def __repr__(self) -> str:
        return super().__repr__().replace("<Checkpoint ", f"<CheckpointSet kind={self.kind} ", 1)


def _length(holder: Holder) -> int:
    return sum(n for _, n in holder.spans)


def _read(holder: Holder, start: int, length: int, fds: dict[str, int]) -> bytes:
    fd = fds.get(holder.file)
    if fd is None:
        fd = fds[holder.file] = open_regular(holder.file)
    parts = []
    for offset, n in sub_spans(holder.spans, start, length):
        data = os.pread(fd, n, offset)
        if len(data) != n:
            raise CheckpointError(holder.file, f"file ended while reading bytes {offset}..{offset + n}")
        parts.append(data)
    return b"".join(parts)


def _same_bytes(a: Holder, b: Holder, fds: dict[str, int], result: ReplicaCheck) -> bool:
    length = _length(a)
    for start in range(0, length, _COMPARE_CHUNK):
        n = min(_COMPARE_CHUNK, length - start)
        x, y = _read(a, start, n, fds), _read(b, start, n, fds)
        result.bytes_read += 2 * n
        if x != y:
            return False
    return True
