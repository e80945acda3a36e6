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


def _bias_corrected_ema(values, beta=0.9):
    out, avg = [], 0.0
    for n, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**n))
    return out


def test_batch_noise_on_a_loss_near_zero_is_neither_divergence_nor_a_missing_suggestion():
    """A trained network: the loss is 3e-4 give or take more than itself, batch to batch, at every rate."""
    from ms_notebook.runs.lr_finder import MIN_STEPS, _suggest, diverged

    lrs = ramp(1e-6, 10.0, 50)
    rng = np.random.default_rng(1)
    losses = list(np.abs(rng.normal(3e-4, 2e-4, 50)) + 1e-6)
    losses[1] = 5e-3  # one bad batch early: 16x the smoothed minimum, the old rule's "diverged" at step 2
    smoothed = _bias_corrected_ema(losses)
    assert not any(diverged(losses[:n], smoothed[:n]) for n in range(1, 51))
    assert suggest(lrs, smoothed, losses)[0] is not None
    losses[1] = losses[2]  # without the bad batch the curve is flat: nothing falls beyond the noise
    smoothed = _bias_corrected_ema(losses)
    suggestion, _, flat = _suggest(lrs, smoothed, losses, MIN_STEPS)
    assert flat and suggestion == pytest.approx(1.0)  # never left its noise: a tenth of the top rate
    assert suggest(lrs[:MIN_STEPS - 1], smoothed[:MIN_STEPS - 1]) == (None, None)


def test_a_real_rise_from_near_zero_stops_the_ramp_and_the_suggestion_stays_below_it():
    from ms_notebook.runs.lr_finder import _suggest, diverged

    lrs = ramp(1e-6, 10.0, 50)
    rng = np.random.default_rng(2)
    level = [3e-4 if lr < 0.05 else 3e-4 * (lr / 0.05) ** 3 * 50 for lr in lrs]
    losses = [abs(v + rng.normal(0, 1e-4)) for v in level]
    smoothed = _bias_corrected_ema(losses)
    stop = next(n for n in range(1, 51) if diverged(losses[:n], smoothed[:n]))
    assert 0.05 < lrs[stop - 1] < 1.0
    suggestion, _, flat = _suggest(lrs[:stop], smoothed[:stop], losses[:stop], 10)
    assert flat and suggestion < 0.05


def test_no_stop_before_the_minimum_number_of_steps():
    from ms_notebook.runs.lr_finder import MIN_STEPS, diverged

    losses = [1.0, 50.0, 500.0, 5000.0] + [1e4] * 20
    smoothed = _bias_corrected_ema(losses)
    verdicts = [diverged(losses[:n], smoothed[:n]) for n in range(1, 25)]
    assert not any(verdicts[: MIN_STEPS - 1]) and any(verdicts)
