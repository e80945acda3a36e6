"""Readers that turn checkpoint files into an index of raw entries without reading tensor bytes.

Every reader answers with the same ``RawIndex``; the rest of the package only ever reads that. A value lives
either in ``spans`` of one file (the checkpoint's own file, or ``file`` for a set of shards) or, for a
parameter cut into slices by distributed training, in several ``pieces``, each a box of the full value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Box = tuple[tuple[int, int], ...]  # [start, stop) along each dim of the full value


@dataclass(slots=True)
class Piece:
    """One stored slice of a value: the bytes in ``spans`` of ``file`` hold the sub-box ``box`` of the full
    value, in C order."""

    file: str
    spans: list[tuple[int, int]]
    box: Box

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(stop - start for start, stop in self.box)


@dataclass(slots=True, eq=False)
class RawEntry:
    """Where one named value lives.

    ``spans`` are ``(offset, length)`` byte ranges whose concatenation is the value's bytes (several when
    MindSpore split a large tensor over consecutive entries), in ``file`` (``None``: the checkpoint's own
    file). ``pieces``, when set, replaces both: the value is assembled from slices in several files.
    ``kind`` is ``"tensor"``, ``"str"`` or ``"maptensor"``; ``nbytes`` is the size of the whole value.

    A reader may pass the offset alone (an int) for a value in one span of ``nbytes``: a million tiny
    entries then do not hold two tuples each while they are indexed. ``spans`` always reads as pairs.
    """

    name: str
    shape: tuple[int, ...]
    ms_dtype: str
    kind: str
    stored_spans: Sequence[tuple[int, int]] | int = field(default_factory=list)
    nbytes: int = 0
    file: str | None = None
    pieces: list[Piece] | None = None

    @property
    def spans(self) -> Sequence[tuple[int, int]]:
        spans = self.stored_spans
        return ((spans, self.nbytes),) if type(spans) is int else spans  # type: ignore[return-value]

    @spans.setter
    def spans(self, spans: Sequence[tuple[int, int]]) -> None:
        self.stored_spans = spans

    def add_span(self, offset: int, length: int) -> None:
        spans = self.stored_spans
        if type(spans) is int:
            self.stored_spans = [(spans, self.nbytes), (offset, length)]
        elif isinstance(spans, list):
            spans.append((offset, length))
        else:  # a reader may store spans as a tuple (smaller)
            self.stored_spans = (*spans, (offset, length))
        self.nbytes += length

    def _key(self) -> tuple:
        return (self.name, self.shape, self.ms_dtype, self.kind, tuple(self.spans), self.nbytes, self.file,
                self.pieces)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawEntry):
            return NotImplemented
        return self._key() == other._key()


@dataclass(slots=True)
class RawIndex:
    """Everything a reader learnt from the headers of one file or one set of files."""

    format: str
    entries: list[RawEntry]
    metadata: dict[str, str] = field(default_factory=dict)
    crc: int | None = None  # .ckpt crc32 trailer value, when the file has one
    crc_end: int = 0  # the crc covers bytes [0, crc_end)
    files: list[str] = field(default_factory=list)  # every file values are read from; empty: the one file
    # (size, mtime_ns, inode) of files as the reader saw them; files without one are stamped when the
    # Checkpoint is made
    stamps: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # name -> index in ``entries``, when the reader made one while reading (the .ckpt walk does, to merge
    # repeated names): the Checkpoint reuses the dict for its name lookup instead of building another
    positions: dict[str, int] | None = None
