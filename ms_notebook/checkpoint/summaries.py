"""One tensor's statistics and histogram, computed once per (file stamps, tensor, bins) and shared by every
view in the process: the server's Viewer payload and the notebook widget's details pane ask
``Checkpoint.describe``, which answers from here, so the second click on a tensor costs nothing. Beside them,
``SKETCHES`` keeps per (file stamps, tensor) what the pass saw (``stats.Sketch``), so another number of bins
(``stats()`` then ``histogram(bins=50)``) follows without reading the tensor again.

A key names the files the value is read from together with their (size, mtime_ns, inode) stamps, so a
rewritten file is never answered from the cache, and two ``Checkpoint`` objects over the same file share
their results. While one thread computes a key, others asking for it wait for that answer instead of
reading the tensor again; a computation stopped by ``Cancelled`` leaves the next waiter to compute.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import Cancelled
from .stats import TensorStats


@dataclass(frozen=True, slots=True)
class TensorSummary:
    """Statistics and histogram of one tensor. ``exact``: the edges are ``numpy.histogram``'s over
    [min, max]; otherwise they enclose [min, max] snugly and the counts are still exact (see stats.py)."""

    stats: TensorStats
    counts: np.ndarray
    edges: np.ndarray
    exact: bool


class SummaryCache:
    """A bounded LRU of summaries (or sketches) with one computation per key at a time."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._busy: dict[Hashable, list] = {}  # key -> [lock held while computing, number of askers]

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_or_compute(
        self,
        key: Hashable,
        compute: Callable[[], Any],
        cancelled: Callable[[], bool] | None = None,
    ) -> Any:
        """The cached summary for ``key``, or ``compute()``'s (run by one asker at a time)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                return value
            busy = self._busy.setdefault(key, [threading.Lock(), 0])
            busy[1] += 1
        try:
            while not busy[0].acquire(timeout=0.1):
                if cancelled is not None and cancelled():
                    raise Cancelled
            try:
                value = self.get(key)
                if value is None:
                    value = compute()
                    with self._lock:
                        self._items[key] = value
                        while len(self._items) > self.maxsize:
                            self._items.popitem(last=False)
                return value
            finally:
                busy[0].release()
        finally:
            with self._lock:
                busy[1] -= 1
                if not busy[1]:
                    self._busy.pop(key, None)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


SUMMARIES = SummaryCache()
SKETCHES = SummaryCache(maxsize=64)  # a fine grid holds up to 512 KB: at most ~32 MB in all


def clear_all() -> None:
    """Forget every summary and sketch (benchmarks start cold with it)."""
    SUMMARIES.clear()
    SKETCHES.clear()
