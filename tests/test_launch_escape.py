"""Nothing outlives a launched job: a grandchild that calls setsid and execs with an empty environment is
still ended (the supervisor is a child subreaper); two launches on one run folder cannot both start; a
script that exits before training or hangs before init() is "failed" with that reason, never "finished" or
"starting" for ever. The supervisor is checked alone first (cheap), then with real msrun jobs (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from ms_notebook.runs import supervisor
from ms_notebook.runs.launch import FAILED, FINISHED, LaunchError, launch
from tests.test_launch import assert_nothing_left

# spawns a grandchild in a session of its own, with an empty environment, that outlives its parent
ESCAPER = textwrap.dedent("""
    import os, subprocess, sys
    child = subprocess.Popen(["/bin/sleep", "600"], start_new_session=True, env={},
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open(sys.argv[1], "w").write(str(child.pid))
""")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(path: Path, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_the_supervisor_adopts_an_escaped_grandchild_and_ends_it(tmp_path):
    script = tmp_path / "escape.py"
    script.write_text(ESCAPER)
    marker = tmp_path / "pid"
    sup = subprocess.Popen([sys.executable, supervisor.__file__, str(tmp_path), "--", sys.executable,
                            str(script), str(marker)], start_new_session=True)  # fmt: skip
    try:
        escaped = int(_wait_for(marker))
        assert _wait_for(tmp_path / supervisor.EXIT_FILE) == "0"  # the script itself exited
        assert _alive(escaped) and psutil.Process(escaped).ppid() == sup.pid  # adopted, not PID 1's
        assert os.getsid(escaped) != os.getsid(sup.pid)
        time.sleep(0.5)
        assert sup.poll() is None  # it stays while a descendant lives
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=30) == 0  # the script's code
        assert not _alive(escaped)
    finally:
        if sup.poll() is None:
            sup.kill()


def test_the_supervisor_exits_with_the_commands_code_when_nothing_is_left(tmp_path):
    code = subprocess.run([sys.executable, supervisor.__file__, str(tmp_path), "--", sys.executable, "-c",
                           "import sys; sys.exit(3)"], timeout=60).returncode  # fmt: skip
    assert code == 3 and (tmp_path / supervisor.EXIT_FILE).read_text() == "3"


# -- real msrun jobs ---------------------------------------------------------------------------------------

TRAINS_AND_ESCAPES = textwrap.dedent("""
    import os, subprocess, sys
    import numpy as np
    import mindspore as ms
    from mindspore import nn
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.train import Model
    import mindspore.dataset as ds
    from ms_notebook import LiveCurves

    ms.set_device("CPU")
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    rank, size = get_rank(), get_group_size()
    if rank == 0:
        child = subprocess.Popen(["/bin/sleep", "600"], start_new_session=True, env={},
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        open(os.path.join(os.environ["MS_NOTEBOOK_RUN_DIR"], "escaped.pid"), "w").write(str(child.pid))
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    y = (x.sum(axis=1) > 2).astype(np.int32)
    data = ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False, num_shards=size, shard_id=rank).batch(16)
    net = nn.Dense(4, 2)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    Model(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9)).train(
        1, data, callbacks=[LiveCurves()], dataset_sink_mode=False)
""")


@pytest.mark.slow
def test_a_setsid_grandchild_with_an_empty_environment_is_ended_with_the_job(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(TRAINS_AND_ESCAPES)
    run = launch(script, workers=2, run_dir=tmp_path / "run")
    assert run.wait(timeout=240) == FINISHED, f"{run.error}"
    escaped = int((run.run_dir / "escaped.pid").read_text())
    assert not _alive(escaped)
    assert_nothing_left(run)


@pytest.mark.slow
def test_a_script_that_exits_before_init_fails_naming_why(tmp_path):
    script = tmp_path / "quits.py"
    script.write_text("import sys\nsys.exit(0)\n")
    run = launch(script, workers=2, run_dir=tmp_path / "run")
    assert run.wait(timeout=240) == FAILED
    assert "ended without training" in run.error.exception and "init()" in run.error.exception
    assert_nothing_left(run)


@pytest.mark.slow
def test_a_script_stuck_before_init_times_out_and_a_second_launch_on_its_folder_is_refused(tmp_path):
    script = tmp_path / "hangs.py"
    script.write_text("import time\ntime.sleep(600)\n")
    run = launch(script, workers=2, run_dir=tmp_path / "run", start_timeout_s=8)
    with pytest.raises(LaunchError, match=r"in use by another launch|already holds a launched job"):
        launch(script, workers=2, run_dir=tmp_path / "run")
    assert run.wait(timeout=120) == FAILED
    assert "no rank started training within 8 s" in run.error.exception
    assert_nothing_left(run)
    with pytest.raises(LaunchError, match="already holds a launched job"):
        launch(script, workers=2, run_dir=tmp_path / "run")
    with pytest.raises(LaunchError, match="start_timeout_s must be positive"):
        launch(script, workers=2, run_dir=tmp_path / "other", start_timeout_s=0)


def test_two_launches_racing_for_one_folder_cannot_both_hold_it(tmp_path):
    from ms_notebook.runs.launch import _lock_run_dir

    first = _lock_run_dir(tmp_path)
    try:
        with pytest.raises(LaunchError, match="in use by another launch"):
            _lock_run_dir(tmp_path)  # another descriptor, as a second launch (here or elsewhere) opens
    finally:
        os.close(first)
    os.close(_lock_run_dir(tmp_path))  # free again once the first job has ended
