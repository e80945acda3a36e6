"""This process's place in a job started by ``ms_notebook.launch``, and the stop handshake its ranks share.

No MindSpore at import: the recorder (``runs/recorder.py``) uses it from any training loop, and the
``Callback`` adapter (``runs/worker.py``) from ``Model.train``. Why stopping needs a handshake: in
data-parallel training every step ends with an all-reduce of the gradients, so all ranks must leave
their loop after the *same* step; a rank that stopped one step earlier would leave the others waiting in
the all-reduce forever.

1. The launcher creates ``control/stop``. Each rank looks for it at most every ``check_s`` (one ``stat``).
2. A rank that sees it writes ``control/ack_<rank>`` holding its current step, and from then on reads the acks
   after every step (a directory listing, only while stopping).
3. Once every rank has answered, each computes the same target ``max(ack steps) + STOP_MARGIN`` and stops
   after that step. Ranks run within one step of each other (the all-reduce holds the faster one back), so
   when the last ack appears no rank is past ``max + 1``: nobody overshoots.
4. The rank saves ``rank_<rank>/last.ckpt`` atomically; after a stop the process exits with status 0.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ms_notebook.atomic import write_text

from .jobdir import RUN_DIR_ENV, JobDir

CHECK_S = 0.2  # look for the stop request at most this often
STOP_MARGIN = 2  # steps after the last ack: every rank can still reach the target


def communication_initialized() -> bool:
    """Whether ``mindspore.communication.init()`` ran here (False where MindSpore is not loaded)."""
    import sys

    if "mindspore" not in sys.modules:
        return False
    try:
        from mindspore.communication._comm_helper import GlobalComm
    except ImportError:  # pragma: no cover - moved in a future release: assume the script knows what it does
        return True
    return bool(GlobalComm.INITED)


class Job:
    """This process's place in a launched job: the run folder, its rank and the number of ranks."""

    def __init__(self, run_dir: str, role: str) -> None:
        self.dir = JobDir(run_dir)
        self.role = role
        self.rank = 0
        self.world_size = 1
        self.initialized = False
        self.locate()

    @classmethod
    def current(cls) -> Job | None:
        """The job this process belongs to, or ``None`` outside ``launch`` (and in msrun's scheduler)."""
        run_dir = os.environ.get(RUN_DIR_ENV)
        role = os.environ.get("MS_ROLE", "")
        if not run_dir or role == "MS_SCHED":
            return None
        return cls(run_dir, role)

    def locate(self) -> None:
        """Rank and size from MindSpore once ``init()`` ran, else from the variables msrun exports."""
        self.initialized = communication_initialized()
        if self.initialized:
            from mindspore.communication import get_group_size, get_rank

            self.rank, self.world_size = int(get_rank()), int(get_group_size())
            return
        env = os.environ
        self.rank = int(env.get("RANK_ID") or env.get("MS_NODE_ID") or 0)
        self.world_size = int(env.get("MS_WORKER_NUM") or env.get("RANK_SIZE") or 1)

    @property
    def metrics_path(self):
        """Where this rank's recorder writes: the run's metrics file on rank 0, nowhere on the others."""
        return self.dir.metrics if self.rank == 0 else None


class StopHandshake:
    """One rank's side of the stop handshake (module doc), driven by plain calls from any training loop."""

    def __init__(self, job: Job, check_s: float = CHECK_S) -> None:
        self.job = job
        self.check_s = check_s
        self.stop_seen = False
        self.target: int | None = None
        self.stopped = False
        self._next_check = 0.0
        self._step = 0

    def begin(self, epochs: int, steps_per_epoch: int, step: int = 0) -> None:
        """Training starts on this rank: say so (the launcher's "running"), and look for a stop at once."""
        job = self.job
        job.locate()  # init() may have run after this object was built
        write_text(job.dir.started_file(job.rank), json.dumps({
            "rank": job.rank, "world_size": job.world_size, "initialized": job.initialized,
            "pid": os.getpid(), "time": time.time(),
            "epochs": int(epochs or 0), "steps_per_epoch": int(steps_per_epoch or 0),
        }))
        self._step = int(step)
        self.look(force=True)

    def look(self, force: bool = False) -> None:
        """Look for the stop request (throttled by time); answer it with this rank's step once seen."""
        if self.stop_seen:
            return
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + self.check_s
        if self.job.dir.stop_file.exists():
            self.stop_seen = True
            write_text(self.job.dir.ack_file(self.job.rank), str(self._step))

    def after_step(self, step: int) -> bool:
        """Step ``step`` (cumulative) ended; True exactly once, when this rank must stop now."""
        self._step = int(step)
        self.look()
        if not self.stop_seen or self.stopped:
            return False
        if self.target is None:
            acks = self.job.dir.acks()
            if len(acks) >= self.job.world_size:
                self.target = max(acks.values()) + STOP_MARGIN
        if self.target is not None and self._step >= self.target:
            self.stopped = True
            return True
        return False

    def save_last(self, net: Any, epoch: int, step: int) -> None:
        """This rank's ``last.ckpt``, atomically, with where it ended and whether it was stopped."""
        from .checkpoints import save_atomic

        append = {"epoch": int(epoch), "step": int(step), "rank": self.job.rank, "stopped": self.stopped}
        save_atomic(net, self.job.dir.last_checkpoint(self.job.rank), append)


def current_handshake() -> StopHandshake | None:
    """The stop handshake of this process when it is a rank of a ``launch`` job, else ``None``."""
    job = Job.current()
    return StopHandshake(job) if job is not None else None
