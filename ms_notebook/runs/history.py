"""One metric log per run: per-step rows, epoch values filled in at epoch ends.

Everything that shows metrics (figure, JSON-lines file, dashboard) reads this log; nothing else keeps metrics.
The log is a list of plain dicts guarded by a lock: the training thread appends while others read.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

STEP_COLUMNS = ("epoch", "step", "loss", "lr", "steps_per_s", "wall_time")
# the JSON-lines schema: fields with a fixed type (anything else in an epoch record is a metric)
_INT_FIELDS = frozenset({"epoch", "step", "epochs", "steps_per_epoch", "steps"})
_NUMBER_FIELDS = frozenset({"loss", "lr", "steps_per_s", "wall_time", "time"})
_TEXT_FIELDS = frozenset({"type", "label", "phase"})
_BAD = object()


class History:
    """Per-step records of one run; ``frame()`` gives the DataFrame (one row per step)."""

    def __init__(self, label: str = "run") -> None:
        self.label = label
        self._rows: list[dict[str, Any]] = []
        self._epochs: list[dict[str, Any]] = []
        self._steps: list[float] = []  # step and loss columns kept apart too: live views copy them often
        self._losses: list[float] = []
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change, so readers can skip redraws when nothing is new
        self.ended = False

    # -- writers (training thread) ------------------------------------------------------------------
    def apply(self, record: dict[str, Any]) -> None:
        """Apply one record: ``{"type": "step"|"epoch"|"end", ...}`` (the JSON-lines schema)."""
        kind = record.get("type")
        with self._lock:
            if kind == "step":
                row = {k: record.get(k) for k in STEP_COLUMNS}
                # anything else a loop logged with the step (grad_norm=...) is a column too
                row.update({k: v for k, v in record.items() if k not in row and k != "type"})
                self._rows.append(row)
                loss = record.get("loss")
                self._steps.append(float(record.get("step") or len(self._rows)))
                self._losses.append(math.nan if loss is None else float(loss))
            elif kind == "epoch":
                values = {k: v for k, v in record.items() if k not in ("type", "epoch", "step")}
                self._epochs.append({"epoch": record.get("epoch"), "step": record.get("step"), **values})
                # fill the epoch columns on the epoch's last step row
                for row in reversed(self._rows):
                    if row["epoch"] == record.get("epoch"):
                        row.update(values)
                        break
            elif kind == "end":
                self.ended = True
            elif kind == "begin":
                self.label = record.get("label", self.label)
            self.version += 1

    # -- readers ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def frame(self) -> pd.DataFrame:
        """One row per training step; epoch metric columns are NaN except on each epoch's last step."""
        with self._lock:
            rows = [dict(r) for r in self._rows]
        frame = pd.DataFrame(rows)
        if frame.empty:
            frame = pd.DataFrame(columns=list(STEP_COLUMNS))
        return frame

    def epochs(self) -> pd.DataFrame:
        """One row per finished epoch: its epoch metrics (also when a run has no step rows)."""
        with self._lock:
            rows = [dict(r) for r in self._epochs]
        return pd.DataFrame(rows)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """Copies of the step and epoch records plus the version, taken under the lock."""
        with self._lock:
            return [dict(r) for r in self._rows], [dict(r) for r in self._epochs], self.version

    def series(self) -> tuple[list[float], list[float], list[dict[str, Any]]]:
        """Copies of the step column, the loss column (NaN where missing) and the epoch records."""
        with self._lock:
            return list(self._steps), list(self._losses), [dict(r) for r in self._epochs]

    def latest(self) -> dict[str, Any]:
        """The last step row merged over the last epoch record (for progress displays)."""
        with self._lock:
            out: dict[str, Any] = dict(self._epochs[-1]) if self._epochs else {}
            if self._rows:
                out.update({k: v for k, v in self._rows[-1].items() if v is not None})
            return out

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], label: str = "run") -> History:
        history = cls(label)
        for record in records:
            history.apply(record)
        return history

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, label: str = "run") -> History:
        """Rebuild a history from a DataFrame (e.g. read back with ``pandas.read_csv``) to overlay it."""
        history = cls(label)
        for row in frame.to_dict("records"):
            step = {k: _clean(row.get(k)) for k in STEP_COLUMNS}
            history.apply({"type": "step", **step})
            extra = {k: _clean(v) for k, v in row.items() if k not in STEP_COLUMNS and _clean(v) is not None}
            if extra:
                history.apply({"type": "epoch", "epoch": step["epoch"], "step": step["step"], **extra})
        return history


def _as_number(value: Any) -> Any:
    """A JSON number as float (None for null or a non-finite value), or _BAD."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _BAD
    value = float(value)
    return value if math.isfinite(value) else None


def _as_int(value: Any) -> Any:
    number = _as_number(value)
    if number is _BAD or number is None:
        return number
    return int(number) if number.is_integer() else _BAD


def clean_record(record: Any) -> dict[str, Any] | None:
    """A metric record made safe for :class:`History`, or None when it is not one (a bad line).

    It must be a JSON object with a string ``type``; the schema's integer, number and text fields must have
    those types (``"step": "abc"`` makes the line bad). Non-finite numbers become None. In an epoch record
    every other value is a metric: numbers are kept, anything else is dropped.
    """
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return None
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str):
            return None
        if key in _INT_FIELDS:
            value = _as_int(value)
        elif key in _NUMBER_FIELDS:
            value = _as_number(value)
        elif key in _TEXT_FIELDS:
            value = value if isinstance(value, str) else _BAD
        elif record["type"] == "epoch":
            value = _as_number(value)
            if value is _BAD:
                continue
        if value is _BAD:
            return None
        out[key] = value
    return out


def json_line(record: dict[str, Any]) -> str:
    """One record as strict JSON (non-finite numbers written as null), newline-terminated."""
    safe = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(safe, allow_nan=False) + "\n"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All good records of a JSON-lines metric log; bad lines and a half-written last line are skipped."""
    records = []
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                continue
            try:
                record = clean_record(json.loads(raw.decode("utf-8")))
            except ValueError:  # not UTF-8 or not JSON
                continue
            if record is not None:
                records.append(record)
    return records
