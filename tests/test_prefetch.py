"""Prefetching .ckpt headers: predictions follow a repeating layout, and never change what the index says.

Files are written in MindSpore's wire layout with real tensor bytes (sparse is not enough: a prediction is
checked against where the walk really finds each header).
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import pytest

from ms_notebook.checkpoint.formats import ckpt
from ms_notebook.checkpoint.formats.prefetch import HeaderPrefetch
from tests.ckpt_wire import write_ckpt

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="prefetching needs posix_fadvise")


def _tensor(*shape: int) -> tuple[list[int], str, bytes]:
    return list(shape), "Float32", np.zeros(shape, np.float32).tobytes()


def _transformer(path, layers: int):
    """Layer after layer of the same shapes, names growing a digit at layer 10, then moments of them all."""
    weights = []
    for n in range(layers):
        for part, shape in (("q.weight", (64, 64)), ("q.bias", (64,)), ("k.weight", (64, 64)),
                            ("fc1.weight", (256, 64)), ("fc2.weight", (64, 256)), ("norm.gamma", (64,))):
            weights.append((f"model.layers.{n}.{part}", *_tensor(*shape)))
    moments = [("moments." + name, dims, dtype, data) for name, dims, dtype, data in weights]
    return write_ckpt(path, weights + moments)


class Recording(HeaderPrefetch):
    """The prefetcher of a real walk, keeping what it predicted and where the walk found each entry."""

    instances: ClassVar[list[Recording]] = []

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.checks: list[tuple[int, bool]] = []  # (entry index, its header lay where predicted)
        Recording.instances.append(self)

    def at_jump(self, entries, pos):
        expected = self.predicted.get(len(entries))
        if expected is not None:
            self.checks.append((len(entries), expected[0] <= pos and pos + self.header_bytes <= expected[1]))
        super().at_jump(entries, pos)


@pytest.fixture
def recording(monkeypatch):
    Recording.instances.clear()
    monkeypatch.setattr(ckpt, "HeaderPrefetch", Recording)
    monkeypatch.setenv("MS_NOTEBOOK_INDEX_CACHE", "off")
    return Recording.instances


def test_a_repeating_layout_is_predicted_past_the_first_layers(tmp_path, recording):
    path = _transformer(tmp_path / "t.ckpt", layers=24)
    index = ckpt.read_index(str(path))
    assert len(index.entries) == 24 * 6 * 2
    (ahead,) = recording
    held = [ok for _, ok in ahead.checks]
    # a place where the layout changes (the moments begin, layer 9 -> 10) may miss once: the next holds again
    assert len(held) > 150 and held.count(False) <= 4
    assert ahead.enabled and ahead.hits > 250 and ahead.wasted < 200
    assert ahead.requested_to > 0.9 * os.path.getsize(path)  # the pages were asked for up to the end


def test_the_index_is_the_same_with_and_without_prefetching(tmp_path, recording, monkeypatch):
    rng = np.random.default_rng(0)
    entries = [(f"t{i}", *_tensor(int(rng.integers(1100, 9000)))) for i in range(80)]  # no repetition
    irregular = write_ckpt(tmp_path / "irregular.ckpt", entries)
    repeating = _transformer(tmp_path / "t.ckpt", layers=12)
    with_prefetch = [ckpt.read_index(str(p)).entries for p in (irregular, repeating)]
    assert recording[0].hits == 0 and recording[0].wasted == 0  # nothing repeats: nothing predicted
    monkeypatch.setattr(Recording, "at_jump", lambda self, entries, pos: None)
    assert [ckpt.read_index(str(p)).entries for p in (irregular, repeating)] == with_prefetch


def test_a_layout_that_keeps_changing_turns_prefetching_off(tmp_path):
    """Predictions that keep failing stop: at most a bounded number of pages is asked for in vain."""
    path = _transformer(tmp_path / "t.ckpt", layers=30)
    real = ckpt.read_index(str(path)).entries
    with open(path, "rb") as f:
        ahead = HeaderPrefetch(f.fileno(), os.path.getsize(path), 512)
        shown: list = []
        for k, entry in enumerate(real):
            if k >= 10:
                ahead.at_jump(shown, entry.spans[0][0] - 100 - k * 7919 % 3000)  # never where predicted
            shown.append(entry)
    assert not ahead.enabled and ahead.hits == 0 and ahead.wasted <= 256 + 16
