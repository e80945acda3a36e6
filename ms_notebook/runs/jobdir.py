"""The folder of one launched job: where its logs, metrics, control files and per-rank checkpoints go.

The launcher (``runs/launch.py``, in the kernel) and the workers (``runs/worker.py``, under ``msrun``) only
ever meet through this folder, so its layout lives here, once. It needs neither MindSpore nor widgets::

    <run_dir>/
      job.json              what was launched (command, workers, port), written by the launcher
      msrun.log             msrun's own output
      logs/worker_<r>.log   each worker's output (msrun --log_dir), logs/scheduler.log
      metrics.jsonl         rank 0's LiveCurves records (the JSON-lines schema of ``follow``)
      control/stop          present once a stop was requested
      control/ack_<r>       rank r saw the stop request at this step (the stop handshake, see worker.py)
      control/rank_<r>.json rank r started training (pid, world size, whether init() was called)
      rank_<r>/             rank r's checkpoints (last.ckpt, written atomically)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUN_DIR_ENV = "MS_NOTEBOOK_RUN_DIR"
METRICS = "metrics.jsonl"
LOGS = "logs"
CONTROL = "control"
STOP = "stop"
LAST_CHECKPOINT = "last.ckpt"


class JobDir:
    """Paths inside one job's run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def msrun_log(self) -> Path:
        return self.root / "msrun.log"

    @property
    def job_file(self) -> Path:
        return self.root / "job.json"

    @property
    def control(self) -> Path:
        return self.root / CONTROL

    @property
    def stop_file(self) -> Path:
        return self.control / STOP

    def worker_log(self, rank: int | str) -> Path:
        """``logs/worker_<rank>.log``, or ``logs/scheduler.log`` for ``rank="scheduler"``."""
        if rank == "scheduler":
            return self.logs / "scheduler.log"
        return self.logs / f"worker_{int(rank)}.log"

    def ack_file(self, rank: int) -> Path:
        return self.control / f"ack_{int(rank)}"

    def started_file(self, rank: int) -> Path:
        return self.control / f"rank_{int(rank)}.json"

    def rank_dir(self, rank: int) -> Path:
        return self.root / f"rank_{int(rank)}"

    def last_checkpoint(self, rank: int) -> Path:
        return self.rank_dir(rank) / LAST_CHECKPOINT

    def acks(self) -> dict[int, int]:
        """{rank: step at which it saw the stop request} for every rank that has answered."""
        out: dict[int, int] = {}
        try:
            names = os.listdir(self.control)
        except FileNotFoundError:
            return out
        for name in names:
            if name.startswith("ack_") and name[4:].isdigit():
                try:
                    out[int(name[4:])] = int((self.control / name).read_text().strip() or -1)
                except (OSError, ValueError):  # not yet renamed into place or unreadable: not an answer
                    continue
        return out

    def started(self) -> dict[int, dict[str, Any]]:
        """{rank: its start record} for every rank that started training."""
        out: dict[int, dict[str, Any]] = {}
        for path in sorted(self.control.glob("rank_*.json")):
            try:
                record = json.loads(path.read_text())
                out[int(record["rank"])] = record
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out


