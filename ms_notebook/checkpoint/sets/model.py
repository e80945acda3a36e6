"""What a set reader learns besides the index: which files hold which slice, which file each rank uses, and
what to tell the user about the choices made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..formats import Box

Spans = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Holder:
    """One stored copy of a slice: ``spans`` of ``file`` (of rank ``rank``, None outside rank sets)."""

    file: str
    spans: Spans
    rank: int | None = None


@dataclass(frozen=True, slots=True)
class Slice:
    """A box of the full value and every copy of it; values are read from the first holder."""

    box: Box
    holders: tuple[Holder, ...]

    @property
    def ranks(self) -> list[int]:
        return [h.rank for h in self.holders if h.rank is not None]

    def describe(self, root: str = "") -> str:
        """``rows 0:4, cols 0:3 · rank_0, rank_2`` (or the file, outside rank sets)."""
        where = ", ".join(f"rank_{r}" for r in self.ranks) or (
            os.path.relpath(self.holders[0].file, root) if root else self.holders[0].file
        )
        return f"{format_box(self.box)} · {where}"


@dataclass(frozen=True, slots=True)
class RankFile:
    """The file one rank folder contributes, the others it holds and the rule that picked it."""

    rank: int
    file: str
    candidates: tuple[str, ...]
    rule: str


@dataclass
class SetInfo:
    """Everything about a set that is not a tensor's index entry."""

    kind: str  # "shards", "ranks" or "unified"
    slices: dict[str, list[Slice]]
    notes: list[str] = field(default_factory=list)
    strategy: tuple[str, ...] = ()
    rank_files: dict[int, RankFile] = field(default_factory=dict)
    replica_ranks: list[int] = field(default_factory=list)  # ranks whose copies are not read (data parallel)
    layouts: dict[str, object] = field(default_factory=dict)  # name -> strategy Layout used (ranks)
    inferred: dict[str, str] = field(default_factory=dict)  # name -> parameter whose layout it follows


def format_box(box: Box) -> str:
    """``[0:4, 0:3]``; the scalar box is ``[]``."""
    return "[" + ", ".join(f"{a}:{b}" for a, b in box) + "]"


def sub_spans(spans: Spans | list[tuple[int, int]], start: int, length: int) -> Spans:
    """The spans holding bytes ``[start, start + length)`` of the concatenation of ``spans``."""
    out = []
    for offset, size in spans:
        if start >= size:
            start -= size
            continue
        take = min(size - start, length)
        out.append((offset + start, take))
        length -= take
        start = 0
        if not length:
            break
    if length:
        raise ValueError("the byte range runs past the spans")
    return tuple(out)
