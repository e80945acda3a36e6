"""Worker side of a job started by ``ms_notebook.launch``, for ``Model.train``: the ``Callback`` adapter of
the stop handshake (``runs/handshake.py``, which holds the rules and the job's place; ``LiveCurves`` uses
it from any loop).

``launch`` puts ``MS_NOTEBOOK_RUN_DIR`` into every worker's environment. ``LiveCurves()`` (no ``log_path``)
looks for it: on rank 0 it appends its records to the run's ``metrics.jsonl``, which the notebook follows;
on every rank it honours the notebook's Stop. A ``Model.train`` script without LiveCurves can add
``JobControl()`` to its callbacks itself. Outside such a job both do nothing.

Ranks that never answer (no JobControl in the script, or stuck) are ended by the launcher after its grace
period, by process group.
"""

from __future__ import annotations

from typing import Any

from mindspore.train import Callback

from .handshake import CHECK_S, STOP_MARGIN, Job, StopHandshake, communication_initialized

__all__ = ["CHECK_S", "STOP_MARGIN", "Job", "JobControl", "communication_initialized"]


class JobControl(Callback):
    """Per-step stop handling and the last checkpoint of one rank in a ``launch`` job (``Model.train``).

    ``LiveCurves()`` includes it; add it yourself only to a script that trains without LiveCurves.
    """

    def __init__(self, job: Job | None = None, check_s: float = CHECK_S) -> None:
        super().__init__()
        job = job if job is not None else Job.current()
        self.job = job
        self.handshake = StopHandshake(job, check_s) if job is not None else None

    @property
    def stopped(self) -> bool:
        return self.handshake is not None and self.handshake.stopped

    @property
    def stop_seen(self) -> bool:
        return self.handshake is not None and self.handshake.stop_seen

    @property
    def target(self) -> int | None:
        return self.handshake.target if self.handshake is not None else None

    def on_train_begin(self, run_context: Any) -> None:
        if self.handshake is None:
            return
        cb_params = run_context.original_args()
        self.handshake.begin(int(getattr(cb_params, "epoch_num", 0) or 0),
                             int(getattr(cb_params, "batch_num", 0) or 0),
                             int(getattr(cb_params, "cur_step_num", 0) or 0))

    def on_train_step_end(self, run_context: Any) -> None:
        if self.handshake is None:
            return
        if self.handshake.after_step(int(run_context.original_args().cur_step_num)):
            run_context.request_stop()

    def on_train_end(self, run_context: Any) -> None:
        if self.handshake is None:
            return
        cb_params = run_context.original_args()
        self.handshake.save_last(cb_params.train_network, int(cb_params.cur_epoch_num),
                                 int(cb_params.cur_step_num))
        if self.handshake.stopped:
            raise SystemExit(0)  # stopped on request: the rest of the script does not run
