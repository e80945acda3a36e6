"""The worker side of a launched job, in this process (no msrun): LiveCurves() finds the run folder in its
environment, writes rank 0's metrics there, and the stop handshake ends Model.train after one common step,
saving the rank's last checkpoint atomically."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from mindspore.train import Callback, Model

from ms_notebook import open_checkpoint
from ms_notebook.atomic import write_text
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.history import read_jsonl
from ms_notebook.runs.jobdir import JobDir
from ms_notebook.runs.worker import STOP_MARGIN, Job, JobControl
from tests.digits_data import digits

pytestmark = pytest.mark.slow


def _model() -> Model:
    ms.set_seed(0)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 16), nn.ReLU(), nn.Dense(16, 10))
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    return Model(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9))


class _At(Callback):
    """Runs ``action(step)`` after each training step (what another rank or the launcher would do then)."""

    def __init__(self, action) -> None:
        super().__init__()
        self.action = action

    def on_train_step_end(self, run_context) -> None:
        self.action(int(run_context.original_args().cur_step_num))


@pytest.fixture
def job_env(tmp_path, monkeypatch) -> JobDir:
    """This process as rank 0 of a job: the variables launch() and msrun set."""
    for name in ("MS_ROLE", "RANK_ID", "MS_NODE_ID", "MS_WORKER_NUM", "RANK_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MS_NOTEBOOK_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MS_ROLE", "MS_WORKER")
    monkeypatch.setenv("RANK_ID", "0")
    return JobDir(tmp_path / "run")


def test_outside_a_job_live_curves_writes_nothing_and_keeps_training(tmp_path, monkeypatch):
    monkeypatch.delenv("MS_NOTEBOOK_RUN_DIR", raising=False)
    assert Job.current() is None
    curves = LiveCurves(display=False)
    _model().train(1, digits(0, 64)(), callbacks=[curves])
    assert curves.log_path is None and len(curves.history) == 2


def test_in_a_job_rank_0_writes_the_run_metrics_and_saves_its_last_checkpoint(job_env, monkeypatch):
    monkeypatch.setenv("MS_WORKER_NUM", "1")
    curves = LiveCurves(display=False)
    _model().train(2, digits(0, 96)(), callbacks=[curves])
    records = read_jsonl(job_env.metrics)
    assert [r["step"] for r in records if r["type"] == "step"] == list(range(1, 7))
    assert records[-1]["type"] == "end"
    started = job_env.started()[0]
    assert started["world_size"] == 1 and started["initialized"] is False and started["steps_per_epoch"] == 3
    last = open_checkpoint(job_env.last_checkpoint(0))
    assert int(last["step"]) == 6 and int(last["stopped"]) == 0
    assert not list(job_env.rank_dir(0).glob(".tmp-*"))


def test_other_ranks_write_no_metrics(job_env, monkeypatch):
    monkeypatch.setenv("RANK_ID", "1")
    monkeypatch.setenv("MS_WORKER_NUM", "2")
    _model().train(1, digits(0, 64)(), callbacks=[LiveCurves(display=False)])
    assert not job_env.metrics.exists()
    assert job_env.last_checkpoint(1).exists() and 1 in job_env.started()


def test_msrun_scheduler_running_the_script_is_not_a_rank(job_env, monkeypatch):
    monkeypatch.setenv("MS_ROLE", "MS_SCHED")
    assert Job.current() is None


def test_stop_waits_for_every_rank_then_ends_after_the_common_target_step(job_env, monkeypatch):
    """Two ranks: this one sees the stop at once, the other (its ack written here) only at step 7.
    Nobody may leave before both answered; then both stop after max(ack) + STOP_MARGIN."""
    monkeypatch.setenv("MS_WORKER_NUM", "2")
    write_text(job_env.stop_file, "{}")
    steps: list[int] = []

    def other_rank(step: int) -> None:
        steps.append(step)
        if step == 7:
            write_text(job_env.ack_file(1), "7")

    curves = LiveCurves(display=False)
    with pytest.raises(SystemExit) as stopped:
        _model().train(50, digits(0, 96)(), callbacks=[curves, _At(other_rank)])
    assert stopped.value.code == 0
    assert job_env.acks() == {0: 0, 1: 7}
    assert steps[-1] == 7 + STOP_MARGIN  # the common target, not this rank's own first sight of the stop
    records = read_jsonl(job_env.metrics)
    assert records[-1]["type"] == "end" and records[-2]["step"] == 7 + STOP_MARGIN
    last = open_checkpoint(job_env.last_checkpoint(0))
    assert int(last["step"]) == 7 + STOP_MARGIN and int(last["stopped"]) == 1
    # the checkpoint holds the trained network and its optimizer state, in the tensors' real values
    assert {"1.weight", "moments.1.weight"} <= {e.name for e in last.entries}
    assert np.isfinite(last["1.weight"]).all()


def test_the_stop_file_is_looked_for_by_time_not_on_every_step(job_env, monkeypatch):
    """With a long check interval a stop requested after the first look is not seen (no stat per step);
    with none it is seen after the very next step."""
    monkeypatch.setenv("MS_WORKER_NUM", "1")

    def request_at_2(step: int) -> None:
        if step == 2:
            write_text(job_env.stop_file, "{}")

    slow = JobControl(Job.current(), check_s=3600.0)
    curves = LiveCurves(display=False)
    curves._handshake = None  # this test drives JobControl itself
    _model().train(2, digits(0, 160)(), callbacks=[curves, _At(request_at_2), slow])
    assert len(curves.history) == 10 and not slow.stop_seen

    job_env.stop_file.unlink()
    eager = JobControl(Job.current(), check_s=0.0)
    with pytest.raises(SystemExit):
        _model().train(2, digits(0, 160)(), callbacks=[_At(request_at_2), eager])
    assert eager.stop_seen and eager.target == 2 + STOP_MARGIN
