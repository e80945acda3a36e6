"""This process's place in a job started by ``ms_notebook.launch``, and the stop handshake its ranks share.

No MindSpore at import: the recorder (``runs/recorder.py``) uses it from any training loop, and the
``Callback`` adapter (``runs/worker.py``) from ``Model.train``. Why stopping needs a handshake: in
data-parallel training every step ends with an all-reduce of the gradients, so all ranks must leave
their loop after the *same* step; a rank that stopped one step earlier would leave the others waiting in
the all-reduce forever.

Once ``init()`` ran (a real data-parallel job), the ranks agree through the job's own communication, so a
stop requested on one machine reaches the ranks of every machine without a shared filesystem:

1. The launcher of the machine whose notebook pressed Stop creates ``control/stop`` in its run folder.
2. Every ``SYNC_STEPS`` steps (counted alike on every rank: they run in lockstep) each rank adds whether it
   sees that file (one ``stat``) into one all-reduce of a single number; a sum above 0 stops every rank after
   that same step. Each writes ``control/ack_<rank>`` with the step, in its own run folder.
3. The rank saves ``rank_<rank>/last.ckpt`` atomically; after a stop the process exits with status 0.

Without ``init()`` (one process; the tests' single-rank jobs) the same agreement runs through files: a rank
that sees the stop writes its ack, and once every rank has answered each stops after ``max(ack steps) +
STOP_MARGIN``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ms_notebook.atomic import write_text

from .jobdir import RUN_DIR_ENV, JobDir

CHECK_S = 0.2  # look for the stop request at most this often (file agreement)
STOP_MARGIN = 2  # steps after the last ack: every rank can still reach the target (file agreement)
SYNC_STEPS = 8  # steps between two all-reduces of the stop flag (~4 ms each on CPU: < 1 % of a step)


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
        self._reduce: Any = None  # the compiled all-reduce of the stop flag, built on first use

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

    @property
    def collective(self) -> bool:
        """Whether the ranks agree by an all-reduce (``init()`` ran, several ranks), not through files."""
        return self.job.initialized and self.job.world_size > 1

    def after_step(self, step: int) -> bool:
        """Step ``step`` (cumulative) ended; True exactly once, when this rank must stop now."""
        self._step = int(step)
        if self.stopped:
            return False
        if self.collective:
            if self._step % SYNC_STEPS:
                return False
            if not self._any_rank(self.job.dir.stop_file.exists()):
                return False
            self.stop_seen = self.stopped = True
            self.target = self._step
            write_text(self.job.dir.ack_file(self.job.rank), str(self._step))
            return True
        self.look()
        if not self.stop_seen:
            return False
        if self.target is None:
            acks = self.job.dir.acks()
            if len(acks) >= self.job.world_size:
                self.target = max(acks.values()) + STOP_MARGIN
        if self.target is not None and self._step >= self.target:
            self.stopped = True
            return True
        return False

    def _any_rank(self, flag: bool) -> bool:
        """Whether any rank's ``flag`` is set: one all-reduce (compiled: the eager one fails on CPU)."""
        import mindspore
        import numpy as np

        if self._reduce is None:
            reduce = mindspore.ops.AllReduce()

            @mindspore.jit
            def any_rank(value):
                return reduce(value)

            self._reduce = any_rank
        total = self._reduce(mindspore.Tensor(np.array([1.0 if flag else 0.0], np.float32)))
        return float(total.asnumpy().reshape(-1)[0]) > 0

    def save_last(self, net: Any, epoch: int, step: int) -> None:
        """This rank's ``last.ckpt``, atomically, with where it ended and whether it was stopped."""
        from .checkpoints import save_atomic

        append = {"epoch": int(epoch), "step": int(step), "rank": self.job.rank, "stopped": self.stopped}
        save_atomic(net, self.job.dir.last_checkpoint(self.job.rank), append)


def current_handshake() -> StopHandshake | None:
    """The stop handshake of this process when it is a rank of a ``launch`` job, else ``None``."""
    job = Job.current()
    return StopHandshake(job) if job is not None else None
