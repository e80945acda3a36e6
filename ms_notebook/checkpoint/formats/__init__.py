"""Readers that turn a checkpoint file into an index of raw entries without reading tensor bytes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RawEntry:
    """Where one named value lives in a file.

    ``spans`` are ``(offset, length)`` byte ranges whose concatenation is the value's bytes (several when
    MindSpore split a large tensor over consecutive entries). ``kind`` is ``"tensor"``, ``"str"`` or
    ``"maptensor"``.
    """

    name: str
    shape: tuple[int, ...]
    ms_dtype: str
    kind: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    nbytes: int = 0  # total length of the spans

    def add_span(self, offset: int, length: int) -> None:
        self.spans.append((offset, length))
        self.nbytes += length


@dataclass(slots=True)
class RawIndex:
    """Everything a reader learnt from a file's headers."""

    format: str
    entries: list[RawEntry]
    metadata: dict[str, str] = field(default_factory=dict)
    crc: int | None = None  # .ckpt crc32 trailer value, when the file has one
    crc_end: int = 0  # the crc covers bytes [0, crc_end)
