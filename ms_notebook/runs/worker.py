"""Worker side of a job started by ``ms_notebook.launch``: where this rank is, and how it stops cleanly.

``launch`` puts ``MS_NOTEBOOK_RUN_DIR`` into every worker's environment. ``LiveCurves()`` (no ``log_path``)
looks for it: on rank 0 it appends its records to the run's ``metrics.jsonl``, which the notebook follows;
on every rank it runs :class:`JobControl`, which honours the notebook's Stop. A script without LiveCurves can
add ``JobControl()`` to its callbacks itself. Outside such a job both do nothing.

Why stopping needs a handshake: in data-parallel training every step ends with an all-reduce of the gradients,
so all ranks must leave ``Model.train`` after the *same* step. A rank that stopped one step earlier than the
others would leave them waiting in the all-reduce forever. So:

1. The launcher creates ``control/stop``. Each rank looks for it at most every ``check_s`` (one ``stat``,
   cheap enough for every step).
2. A rank that sees it writes ``control/ack_<rank>`` holding its current step, and from then on reads the acks
   after every step (a directory listing, only while stopping).
3. Once every rank has answered, each computes the same target ``max(ack steps) + 2`` and asks
   ``run_context.request_stop()`` after that step. Ranks run within one step of each other (the all-reduce
   holds the faster one back), so when the last ack appears no rank is past ``max + 1``: nobody overshoots.
4. At the end of training the rank saves ``rank_<rank>/last.ckpt`` (atomically), and after a stop the process
   exits with status 0 (``SystemExit``), skipping the rest of the script.

Ranks that never answer (no JobControl in the script, or stuck) are ended by the launcher after its grace
period, by process group.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from mindspore.train import Callback

from ms_notebook.atomic import write_text

from .jobdir import RUN_DIR_ENV, JobDir

CHECK_S = 0.2  # look for the stop request at most this often
STOP_MARGIN = 2  # steps after the last ack: every rank can still reach the target


def communication_initialized() -> bool:
    """Whether ``mindspore.communication.init()`` ran in this process."""
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
        """Where this rank's LiveCurves writes: the run's metrics file on rank 0, nowhere on the others."""
        return self.dir.metrics if self.rank == 0 else None


class JobControl(Callback):
    """Per-step stop handling and the last checkpoint of one rank in a ``launch`` job (see the module doc).

    ``LiveCurves()`` includes it; add it yourself only to a script that trains without LiveCurves.
    """

    def __init__(self, job: Job | None = None, check_s: float = CHECK_S) -> None:
        super().__init__()
        self.job = job if job is not None else Job.current()
        self.check_s = check_s
        self.stop_seen = False
        self.target: int | None = None
        self.stopped = False
        self._next_check = 0.0
        self._step = 0

    def on_train_begin(self, run_context: Any) -> None:
        job = self.job
        if job is None:
            return
        job.locate()  # init() may have run after this callback was built
        cb_params = run_context.original_args()
        write_text(job.dir.started_file(job.rank), json.dumps({
            "rank": job.rank, "world_size": job.world_size, "initialized": job.initialized,
            "pid": os.getpid(), "time": time.time(),
            "epochs": int(getattr(cb_params, "epoch_num", 0) or 0),
            "steps_per_epoch": int(getattr(cb_params, "batch_num", 0) or 0),
        }))
        self._step = int(getattr(cb_params, "cur_step_num", 0) or 0)
        self._look(force=True)

    def _look(self, force: bool = False) -> None:
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

    def on_train_step_end(self, run_context: Any) -> None:
        if self.job is None:
            return
        self._step = int(run_context.original_args().cur_step_num)
        self._look()
        if not self.stop_seen:
            return
        if self.target is None:
            acks = self.job.dir.acks()
            if len(acks) >= self.job.world_size:
                self.target = max(acks.values()) + STOP_MARGIN
        if self.target is not None and self._step >= self.target and not self.stopped:
            self.stopped = True
            run_context.request_stop()

    def on_train_end(self, run_context: Any) -> None:
        if self.job is None:
            return
        from .checkpoints import save_atomic

        cb_params = run_context.original_args()
        append = {"epoch": int(cb_params.cur_epoch_num), "step": int(cb_params.cur_step_num),
                  "rank": self.job.rank, "stopped": self.stopped}
        save_atomic(cb_params.train_network, self.job.dir.last_checkpoint(self.job.rank), append)
        if self.stopped:
            raise SystemExit(0)  # stopped on request: the rest of the script does not run
