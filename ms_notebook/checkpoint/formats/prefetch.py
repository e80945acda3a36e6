"""Reading the entry headers of a cold ``.ckpt`` ahead of the walk, where they will be.

A walk over a file of big tensors is a chain of dependent reads: where entry ``i + 1`` begins is known only
once entry ``i``'s header has been read, so a cold 480-entry file costs 480 disk round trips one after the
other (~25 ms here), whatever the disk's bandwidth. But checkpoints repeat themselves: layer after layer
holds tensors of the same sizes, and optimizer moments repeat the weights' sizes. When the sizes of the last
16 (else 8) entries have been seen before (shorter contexts mislead: within a layer, the sizes of two or
four entries often repeat already), the entries that followed then predict where the next headers lie;
those pages are requested together (``POSIX_FADV_WILLNEED``, which returns at once), so the disk serves
them in parallel and the walk then finds them cached.

A prediction only decides what is read early, never what is parsed: the walk reads every header itself.
Pages asked for are those the walk reads anyway when the prediction is right (plus a small margin); a wrong
prediction resets the horizon, and a file that keeps defeating the predictions is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from . import RawEntry

CONTEXTS = (16, 8)  # sizes of this many preceding entries identify a place in a repeating layout
FIRST_HORIZON = 16  # entries predicted ahead at first and at least; doubled while predictions hold
MAX_HORIZON = 1024
PAGE = 4096
MARGIN = 32  # bytes asked for around a predicted header (names a few bytes longer or shorter)
RECENT = 4096  # entries before a jump whose contexts are recorded (a million tiny ones need not be)
MAX_CONTEXTS = 1 << 16  # contexts remembered per length: a huge file forgets older ones, not its memory


def _start(entries: Sequence[RawEntry], k: int) -> int:
    """Offset of entry ``k``'s protobuf record: where the previous entry's bytes end (0 for the first)."""
    if k == 0:
        return 0
    before = entries[k - 1]
    return before.spans[-1][0] + before.spans[-1][1]


class HeaderPrefetch:
    """Called by the walk before each read that jumps over tensor bytes; asks for the headers ahead."""

    def __init__(
        self, fd: int, size: int, header_bytes: int,
        fetch: Callable[[list[tuple[int, int]]], None] | None = None,
    ) -> None:
        self.fd = fd
        self.fetch = fetch  # a remote object's reader: requests the ranges (concurrently) instead
        self.size = size
        self.header_bytes = header_bytes  # what the walk reads at an entry's start
        # per context length: the sizes of that many entries -> the last entry that followed them
        self.seen: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in CONTEXTS}
        self.indexed = min(CONTEXTS)  # entries before ``indexed`` have their contexts in ``seen``
        self.predicted: dict[int, tuple[int, int]] = {}  # entry index -> byte range its header should be in
        self.refill_at = 0  # the entry from which to predict further (half-way through the last prediction)
        self.requested_to = 0  # file offset up to which pages have been asked for
        self.horizon = FIRST_HORIZON
        self.hits = 0  # entries whose predicted place held (up to the last one checked)
        self.wasted = 0  # entries predicted beyond a place that did not hold
        self.checked = 0  # the last entry found where predicted
        self.last = 0  # the last entry predicted
        self.enabled = fetch is not None or hasattr(os, "posix_fadvise")

    def at_jump(self, entries: Sequence[RawEntry], pos: int) -> None:
        """Entry ``len(entries)`` begins at ``pos``, past the bytes read so far."""
        if not self.enabled:
            return
        i = len(entries)
        expected = self.predicted.pop(i, None)
        if expected is not None:
            if expected[0] <= pos and pos + self.header_bytes <= expected[1]:
                self.hits += i - self.checked
                self.checked = i
                if i < self.refill_at:
                    return  # enough is on its way
                self.horizon = min(self.horizon * 2, MAX_HORIZON)
            else:  # the layout changed here: what was asked for beyond this entry is wrong too
                self.wasted += self.last - i + 1
                self.requested_to = pos
                self.horizon = FIRST_HORIZON
                if self.wasted > 2 * self.hits + 256:
                    self.enabled = False  # a file whose layout does not repeat: stop guessing
                    return
        elif i < self.refill_at:
            return  # a split tensor or a repeated name shifted the count: the pages asked for still serve
        # entries before this one that the walk reached without a jump are no longer of interest
        self.predicted = {}
        self._predict(entries, i, pos)

    def _index(self, entries: Sequence[RawEntry], upto: int) -> int | None:
        """Record the contexts of entries up to ``upto``; returns where ``upto``'s context was seen last."""
        first = max(self.indexed, upto + 1 - RECENT)
        base = max(0, first - CONTEXTS[0])
        sizes = [e.nbytes for e in entries[base:upto]]  # sizes[k - base] is entry k's
        found: dict[int, int | None] = {}
        for n, seen in self.seen.items():
            if len(seen) > MAX_CONTEXTS:
                seen.clear()
            for k in range(max(first, base + n), upto + 1):
                key = tuple(sizes[k - base - n : k - base])
                found[n] = seen.get(key)
                seen[key] = k
        self.indexed = max(self.indexed, upto + 1)
        return next((j for n in CONTEXTS if (j := found.get(n)) is not None), None)

    def _predict(self, entries: Sequence[RawEntry], i: int, pos: int) -> None:
        if i < min(CONTEXTS) + 1:
            return
        j = self._index(entries, i)
        if j is None or j >= i:
            return
        period = i - j

        def length(k: int) -> int:  # bytes of entry k's whole record
            e = entries[k]
            return e.spans[-1][0] + e.spans[-1][1] - _start(entries, k)

        # names here are this much longer than there
        shift = length(i - 1) - entries[i - 1].nbytes - (length(j - 1) - entries[j - 1].nbytes)
        lengths: dict[int, int] = {}
        ranges: list[tuple[int, int]] = []
        start = pos
        last = i
        for m in range(1, self.horizon + 1):
            like = j + (m - 1) % period  # entry i + m - 1 is like this earlier one
            step = lengths.get(like)
            if step is None:
                step = lengths[like] = length(like) + shift
            start += step
            if start >= self.size:
                break
            lo, hi = start - MARGIN, min(start + self.header_bytes + MARGIN, self.size)
            self.predicted[i + m] = (lo, hi)
            ranges.append((lo, hi))
            last = i + m
        self.refill_at = i + (last - i + 1) // 2
        self.checked, self.last = i, last
        self._request(ranges)

    def _request(self, ranges: list[tuple[int, int]]) -> None:
        """Ask the kernel to read these byte ranges (merged per page) in the background."""
        if self.fetch is not None:  # a remote object: exactly these ranges (no pages), requested together;
            self.fetch(ranges)  # the fetcher skips those it holds (a corrected prediction is fetched again)
            return
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if hi <= self.requested_to:
                continue  # asked for by an earlier prediction
            lo = max(lo, self.requested_to) // PAGE * PAGE
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        if merged:
            self.requested_to = merged[-1][1]
        try:
            for lo, hi in merged:
                os.posix_fadvise(self.fd, lo, hi - lo, os.POSIX_FADV_WILLNEED)
        except OSError:
            self.enabled = False
