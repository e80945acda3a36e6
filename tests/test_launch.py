"""Real 2-worker msrun jobs launched from this process: a plan's generated script finishing, a Stop that
saves every rank's last checkpoint, a failing rank, a script that never calls init(), ports in use.
After every wait() no process of the job may be left. Each job costs ~15-50 s on two cores."""

from __future__ import annotations

import socket
import textwrap
import time

import numpy as np
import psutil
import pytest

from ms_notebook import TransferPlan, launch, open_checkpoint
from ms_notebook.demo import DigitsNet
from ms_notebook.runs import launch as launch_module
from ms_notebook.runs.handshake import SYNC_STEPS
from ms_notebook.runs.launch import FAILED, FINISHED, STOPPED, PortInUseError, processes_with_run_dir

pytestmark = pytest.mark.slow

SMALL_JOB = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import mindspore as ms
    from mindspore import nn
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.train import Callback, Model
    import mindspore.dataset as ds
    from ms_notebook import LiveCurves

    mode = sys.argv[1]
    if mode == "handled":  # every process prints a traceback it handled, the scheduler too (before init)
        import traceback
        try:
            import a_module_that_is_not_installed  # noqa: F401
        except ImportError:
            traceback.print_exc()
    ms.set_device("CPU")
    rank, size = 0, 1
    if mode != "no-init":
        init()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
        rank, size = get_rank(), get_group_size()
    x = np.random.default_rng(0).random((256, 16), dtype=np.float32)
    y = (x.sum(axis=1) > 8).astype(np.int32)
    data = ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False, num_shards=size, shard_id=rank).batch(16)
    net = nn.Dense(16, 2)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9))

    class Misbehave(Callback):
        def on_train_step_end(self, run_context):
            step = run_context.original_args().cur_step_num
            if mode == "raise" and rank == 1 and step == 3:
                raise ValueError("rank 1 cannot go on")
            if mode == "stuck" and rank == 1 and step == 3:
                open(os.path.join(os.environ["MS_NOTEBOOK_RUN_DIR"], "stuck"), "w").close()
                time.sleep(600)  # never answers a stop; rank 0 waits for it in the all-reduce

    model.train(100, data, callbacks=[LiveCurves(), Misbehave()], dataset_sink_mode=False)
""")


@pytest.fixture(scope="module")
def small_job(tmp_path_factory):
    path = tmp_path_factory.mktemp("jobs") / "small_job.py"
    path.write_text(SMALL_JOB)
    return path


def assert_nothing_left(run) -> None:
    """No process of the job: none recorded still alive, none anywhere with the run's folder."""
    assert processes_with_run_dir(run.run_dir) == []
    alive = []
    for record in run._procs.records.values():
        try:
            if record.process.is_running() and record.process.status() != psutil.STATUS_ZOMBIE:
                alive.append(record.process.pid)
        except psutil.NoSuchProcess:
            continue
    assert alive == []
    assert run._msrun.poll() is not None


def wait_for_step(run, step: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not run.done:
        if run.progress()["step"] >= step:
            return
        time.sleep(0.2)
    raise AssertionError(f"the job did not reach step {step}: {run}\n{run.log(0)[-2000:]}")


def test_a_plans_script_trains_data_parallel_to_the_end(pretrained, tmp_path):
    from ms_notebook.widgets.distributed_run import DistributedRunView, snapshot_html

    plan = TransferPlan(DigitsNet(5, seed=1), pretrained).train_last(2)
    script = plan.to_script(tmp_path / "train.py", epochs=2)
    run = launch(script, workers=2, run_dir=tmp_path / "run")
    assert run.state in ("starting", "running")
    assert run.wait(timeout=300) == FINISHED, f"{run.error}\n{run.log(0)[-3000:]}"
    assert_nothing_left(run)
    assert run.returncodes == {0: 0, 1: 0} and run.returncode == 0 and run.error is None
    history = run.history
    per_rank = 4  # 100 transfer images / 2 ranks / batch 16
    assert history["step"].tolist() == list(range(1, 2 * per_rank + 1))
    assert history["eval_accuracy"].notna().sum() == 2
    # both ranks trained the same network: the same weights in their checkpoints (data parallelism)
    saved = run.checkpoints()
    assert sorted(saved) == [0, 1]
    first, second = (open_checkpoint(saved[r]) for r in (0, 1))
    names = [e.name for e in first.entries if e.name != "rank"]
    assert "head.weight" in names and "moments.head.weight" in names
    assert all(np.array_equal(first[n], second[n]) for n in names)
    assert int(first["step"]) == 2 * per_rank and int(first["stopped"]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "rank_1").glob("net-*.ckpt")) == ["net-1_4.ckpt",
                                                                                       "net-2_4.ckpt"]
    assert "rank 0: done" in run.log(0) and "rank 1: done" in run.log(1)
    # the view of a finished run: progress full, Stop off, the final snapshot with the figure
    view = DistributedRunView(run)
    assert view.progress.value == 1.0 and view.stop_button.disabled
    assert "finished" in view.status.value and "step 8/8" in view.status.value
    assert view.log_choice.options[:2] == (("rank 0", 0), ("rank 1", 1))
    assert "rank 0: done" in view.log_view.value
    page = snapshot_html(run)
    assert "finished" in page and "data:image/png;base64," in page and "rank 1: 0" in page


@pytest.mark.parametrize("style", ["model", "functional"])
def test_stop_ends_every_rank_after_one_common_step_with_its_last_checkpoint(style, pretrained, tmp_path):
    """Model.train scripts and MindSpore 2.x's own loop (value_and_grad + DistributedGradReducer) alike."""
    from ms_notebook.widgets.distributed_run import DistributedRunView

    plan = TransferPlan(DigitsNet(5, seed=1), pretrained).freeze_backbone()
    script = plan.to_script(tmp_path / "train.py", epochs=5000, style=style)
    run = launch(script, workers=2, run_dir=tmp_path / "run")
    view = DistributedRunView(run)
    wait_for_step(run, 12)
    assert "running" in view.status.value and not view.stop_button.disabled
    deadline = time.monotonic() + 30  # the embedded live chart is fed with the view's own updates
    while not view.chart.steps and time.monotonic() < deadline:
        time.sleep(0.2)
    assert view.chart.steps and view.chart.live
    view.stop_button.click()
    assert run.wait(timeout=120) == STOPPED, f"{run.error}"
    assert_nothing_left(run)
    assert run.returncodes == {0: 0, 1: 0}  # they stopped by themselves, nothing was killed
    saved = run.checkpoints()
    steps = {r: int(open_checkpoint(saved[r])["step"]) for r in (0, 1)}
    acks = run.dir.acks()
    assert sorted(acks) == [0, 1]
    assert steps[0] == steps[1] == max(acks.values()) == min(acks.values())  # one agreed step
    assert steps[0] % SYNC_STEPS == 0  # agreed through the all-reduce of the stop flag
    assert all(int(open_checkpoint(saved[r])["stopped"]) == 1 for r in (0, 1))
    assert run.history["step"].iloc[-1] == steps[0] < 5000 * 4
    assert "stopped" in view.status.value and view.stop_button.disabled


def test_a_failing_rank_fails_the_job_at_once_with_its_traceback(small_job, tmp_path):
    run = launch(small_job, "raise", workers=2, run_dir=tmp_path / "run", node_timeout_s=120)
    assert run.wait(timeout=240) == FAILED
    assert_nothing_left(run)
    error = run.error
    assert error.rank == 1 and error.exit_code == 1
    assert error.exception == "ValueError: rank 1 cannot go on"
    assert "small_job.py" in error.traceback and "raise ValueError" in error.traceback
    assert "rank 1 failed (exit code 1): ValueError: rank 1 cannot go on" in str(error)
    assert run.returncodes[1] == 1
    # ended by the launcher from the exit code, not by the scheduler's heartbeat timeout (120 s here)
    assert "timed out" not in run.log("scheduler")


def test_a_script_without_init_is_stopped_and_named(small_job, tmp_path):
    run = launch(small_job, "no-init", workers=2, run_dir=tmp_path / "run")
    assert run.wait(timeout=240) == FAILED
    assert_nothing_left(run)
    assert "without calling mindspore.communication.init()" in run.error.exception
    assert run.error.rank in (0, 1)


def test_a_traceback_the_script_handled_is_not_a_failure(small_job, tmp_path):
    run = launch(small_job, "handled", workers=2, run_dir=tmp_path / "run")
    assert run.wait(timeout=240) == FINISHED, f"{run.error}"
    assert "a_module_that_is_not_installed" in run.log("scheduler")
    assert run.error is None and run.returncodes == {0: 0, 1: 0}
    assert_nothing_left(run)


def test_stop_before_any_rank_trains_ends_the_job_at_once(small_job, tmp_path):
    run = launch(small_job, "ok", workers=2, run_dir=tmp_path / "run")
    run.stop()  # nothing to save yet: no grace period
    assert run.wait(timeout=60) == STOPPED
    assert_nothing_left(run)
    assert run.checkpoints() == {} and run.error is None


def test_ranks_that_do_not_answer_a_stop_are_ended_after_the_grace_period(small_job, tmp_path):
    run = launch(small_job, "stuck", workers=2, run_dir=tmp_path / "run", grace_s=3)
    deadline = time.monotonic() + 240
    while not (run.run_dir / "stuck").exists() and time.monotonic() < deadline and not run.done:
        time.sleep(0.2)
    run.stop()
    assert run.wait(timeout=60) == STOPPED
    assert_nothing_left(run)
    assert run.dir.acks() == {}  # nobody could answer: both were ended by signal
    assert all(code is not None and code < 0 for code in run.returncodes.values()), run.returncodes
    assert run.checkpoints() == {}


def test_bad_launch_arguments_are_refused_naming_the_problem(small_job, tmp_path):
    from ms_notebook.runs.launch import LaunchError

    cases = [
        ({"script": tmp_path / "missing.py"}, "missing.py does not exist"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"workers": 2, "worker_num": 1}, r"worker_num \(1\) counts all machines' workers"),
        ({"workers": 2, "worker_num": 4, "node_rank": 2}, r"node_rank must be in 0\.\.1"),
        ({"cwd": tmp_path / "nowhere"}, "nowhere does not exist"),
        ({"master_port": 80}, "1024..65535"),
    ]
    for kwargs, message in cases:
        args = {"script": small_job, "run_dir": tmp_path / "run", **kwargs}
        with pytest.raises(LaunchError, match=message):
            launch(args.pop("script"), "ok", **args)
    assert not (tmp_path / "run").exists()


def test_a_master_port_in_use_is_refused_before_anything_starts(small_job, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"master port {port} on 127.0.0.1 is in use"):
            launch(small_job, "ok", workers=2, run_dir=tmp_path / "run", master_port=port)
    assert not (tmp_path / "run").exists()


def test_a_port_taken_after_the_check_fails_the_job_instead_of_hanging(small_job, tmp_path, monkeypatch):
    """Another program may take the port between the check and the scheduler's start: the scheduler then
    cannot listen, and the workers would wait for it for msrun's whole cluster timeout."""
    monkeypatch.setattr(launch_module, "check_port", lambda host, port: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = launch(small_job, "ok", workers=2, run_dir=tmp_path / "run", master_port=port)
        assert run.wait(timeout=240) == FAILED
    assert_nothing_left(run)
    assert run.error.rank == "scheduler"
    assert f"could not listen on 127.0.0.1:{port}" in run.error.exception
