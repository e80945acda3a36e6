"""The learning-rate finder's ramp and suggestion rules on known curves (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ms_notebook.runs.lr_finder import ramp, suggest


def test_ramp_is_geometric_from_start_to_end():
    rates = ramp(1e-6, 1.0, 7)
    assert rates[0] == pytest.approx(1e-6) and rates[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(rates)), 1.0)
    with pytest.raises(ValueError):
        ramp(1.0, 1e-3, 10)


def test_the_suggestion_lies_in_the_valley_not_in_the_noisy_start():
    lrs = ramp(1e-6, 10.0, 50)
    rng = np.random.default_rng(0)
    loss = []
    for lr in lrs:
        x = math.log10(lr)
        # flat and noisy up to 1e-3, falling to a minimum near 0.3, then diverging
        value = 2.0 if x < -3 else 2.0 - 0.5 * (x + 3) if x < -0.5 else 0.75 + 3 * (x + 0.5) ** 2
        loss.append(value + rng.normal(0, 0.05))
    suggestion, lr_min = suggest(lrs, loss)
    assert 1e-3 < suggestion < 0.3
    assert lr_min == pytest.approx(lrs[int(np.argmin(loss))] / 10)
    assert suggest(lrs[:3], loss[:3]) == (None, None)
