"""Run progress: speed over a moving window (a slow first step does not set the ETA); cumulative epochs."""

from __future__ import annotations

import pytest

from ms_notebook.runs.progress import RunProgress


def steps(progress: RunProgress, times: list[float]) -> None:
    for t in times:
        progress.step_ends(now=t)


def test_a_slow_first_step_does_not_set_the_eta():
    progress = RunProgress(window_s=15.0)
    progress.begin(epochs=10, steps_per_epoch=100)  # 1,000 steps
    steps(progress, [30.0])  # graph compilation: the first step ends 30 s after the start
    assert progress.snapshot()["eta_s"] is None  # one step: no speed yet, not "ETA 8 h"
    steps(progress, [30.0 + 0.04 * i for i in range(1, 50)])  # then 25 steps per second
    snap = progress.snapshot()
    assert snap["steps_per_s"] == pytest.approx(25.0)
    assert snap["eta_s"] == pytest.approx((1000 - 50) / 25.0)


def test_the_window_follows_a_change_of_speed():
    progress = RunProgress(window_s=5.0)
    progress.begin(epochs=1, steps_per_epoch=10_000)
    steps(progress, [0.1 * i for i in range(1, 201)])  # 10 steps/s for 20 s
    assert progress.rate() == pytest.approx(10.0)
    steps(progress, [20.0 + 0.5 * i for i in range(1, 21)])  # then 2 steps/s for 10 s
    assert progress.rate() == pytest.approx(2.0)  # the last 5 s only


def test_a_continued_run_covers_the_next_epochs_of_the_history():
    progress = RunProgress()
    progress.begin(epochs=5, steps_per_epoch=10, epoch_offset=35, step_offset=350)
    progress.epoch_begins(3)
    steps(progress, [1.0 + i for i in range(24)])
    snap = progress.snapshot()
    assert (snap["first_epoch"], snap["last_epoch"]) == (36, 40)
    assert (snap["epoch"], snap["global_epoch"]) == (3, 38)
    assert (snap["step"], snap["total"], snap["global_step"]) == (24, 50, 374)
    assert snap["fraction"] == pytest.approx(24 / 50)


def test_before_any_run_nothing_is_claimed():
    snap = RunProgress().snapshot()
    assert snap["step"] == snap["total"] == 0
    assert snap["eta_s"] is None and snap["steps_per_s"] == 0.0 and snap["fraction"] == 0.0
