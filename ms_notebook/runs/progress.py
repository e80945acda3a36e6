"""Progress of one training run: steps done, a moving-window speed and ETA, and its place among the epochs.

Kept apart from the Runner so the rules are plain and testable without training:

* Speed is measured over a moving window of recent steps (the last ``window_s`` seconds, at least two
  step ends), starting at the end of the first step. The first step carries graph compilation (seconds in
  GRAPH mode), so an average from the start of the run said "ETA 30 min" for a run of 40 s; an average over
  the whole run also stays wrong for long after the speed changes.
* A run continues the epochs of the history it is recorded into (``LiveCurves`` numbers epochs and steps
  cumulatively): a second Fine-tune of 5 epochs after 35 recorded ones covers epochs 36–40, and says so.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

WINDOW_S = 15.0


def format_seconds(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s' or '–' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def progress_line(progress: dict[str, Any]) -> str:
    """"epoch 2/5 · step 40/100 · 14.2 steps/s · ETA 4 s" from ``RunProgress.snapshot()`` (what is known)."""
    parts = []
    epoch, epochs = progress.get("global_epoch") or progress.get("epoch"), progress.get("last_epoch")
    if epoch:
        parts.append(f"epoch {epoch}/{epochs}" if progress.get("epochs") else f"epoch {epoch}")
    step, total = progress.get("global_step", progress.get("step", 0)), progress.get("total", 0)
    offset = progress.get("step_offset", 0)
    if step:
        parts.append(f"step {step}/{offset + total}" if total else f"step {step}")
    if progress.get("steps_per_s"):
        parts.append(f"{progress['steps_per_s']:.1f} steps/s")
        if total:
            parts.append(f"ETA {format_seconds(progress.get('eta_s'))}")
    return " · ".join(parts)


class RunProgress:
    """Counters of the current (or last) fit, updated from the training thread, read from any thread."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._points: deque[tuple[float, int]] = deque()  # (time, step) at step ends
        self._state: dict[str, Any] = {"step": 0, "total": 0, "epoch": 0, "epochs": 0, "epoch_offset": 0,
                                       "step_offset": 0}

    def begin(self, epochs: int, steps_per_epoch: int, epoch_offset: int = 0, step_offset: int = 0) -> None:
        """A fit of ``epochs`` epochs after ``epoch_offset`` recorded epochs (``step_offset`` steps)."""
        with self._lock:
            self._points.clear()
            self._state = {
                "step": 0, "total": int(epochs) * int(steps_per_epoch), "epoch": 0, "epochs": int(epochs),
                "epoch_offset": int(epoch_offset), "step_offset": int(step_offset),
                "started": time.perf_counter(),
            }

    def set_size(self, epochs: int, steps_per_epoch: int) -> None:
        """The run's size became known after it began (a loop's first ``steps()``); counts are kept."""
        with self._lock:
            if epochs:
                self._state["epochs"] = int(epochs)
            total = int(self._state["epochs"] or 1) * int(steps_per_epoch) if epochs else 0
            # without a planned number of epochs the total is the current epoch's end
            self._state["total"] = total or int(self._state.get("step", 0)) + int(steps_per_epoch)
            self._state["steps_per_epoch"] = int(steps_per_epoch)

    def epoch_begins(self, epoch_in_run: int) -> None:
        with self._lock:
            self._state["epoch"] = int(epoch_in_run)

    def step_ends(self, now: float | None = None) -> int:
        """One more step done; returns the steps done in this run."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._state["step"] += 1
            self._state["now"] = now
            step = self._state["step"]
            points = self._points
            points.append((now, step))
            while len(points) > 2 and now - points[0][0] > self.window_s:
                points.popleft()
            return step

    def rate(self) -> float:
        """Steps per second over the window; 0 until two steps have ended."""
        with self._lock:
            if len(self._points) < 2:
                return 0.0
            (t0, s0), (t1, s1) = self._points[0], self._points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Everything a progress display needs, consistent with the history's cumulative numbering.

        ``step``/``total``/``epoch``/``epochs``: this run (1-based epoch); ``global_step``/``global_epoch``:
        the same position in the cumulative history; ``first_epoch``–``last_epoch``: the epochs this run
        covers; ``fraction``, ``steps_per_s`` (window) and ``eta_s`` (None while unknown).
        """
        rate = self.rate()
        with self._lock:
            p = dict(self._state)
        step, total = p["step"], p["total"]
        p["fraction"] = step / total if total else 0.0
        p["steps_per_s"] = rate
        p["eta_s"] = (total - step) / rate if rate > 0 and total else None
        p["global_step"] = p["step_offset"] + step
        p["global_epoch"] = p["epoch_offset"] + p["epoch"] if p["epoch"] else p["epoch_offset"]
        p["first_epoch"] = p["epoch_offset"] + 1
        p["last_epoch"] = p["epoch_offset"] + p["epochs"]
        return p
