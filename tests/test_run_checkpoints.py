"""Run-folder checkpoints: atomic last/best files, appended values, source protection, SIGKILL mid-write."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook.runs.checkpoints import RunCheckpoints, clean_temporaries, save_atomic
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import Runner
from tests.digits_data import digits

pytestmark = pytest.mark.slow




def test_save_atomic_overwrites_read_only_checkpoints_and_appends_values(tmp_path):
    net = nn.Dense(4, 3)
    path = save_atomic(net, tmp_path / "last.ckpt", {"epoch": 1, "accuracy": 0.5})
    assert stat.S_IMODE(path.stat().st_mode) & stat.S_IWUSR == 0  # MindSpore writes 0o400 files
    net.weight.set_data(ms.Tensor(np.ones((3, 4), np.float32)))
    save_atomic(net, path, {"epoch": 2, "accuracy": 0.75})
    loaded = ms.load_checkpoint(str(path))
    assert np.array_equal(loaded["weight"].asnumpy(), np.ones((3, 4), np.float32))
    assert float(loaded["epoch"].asnumpy()) == 2
    assert float(loaded["accuracy"].asnumpy()) == pytest.approx(0.75)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_source_checkpoint_is_never_overwritten(tmp_path):
    net = nn.Dense(4, 3)
    source = save_atomic(net, tmp_path / "pretrained.ckpt")
    before = source.read_bytes()
    with pytest.raises(ValueError, match="source checkpoint"):
        save_atomic(net, tmp_path / "pretrained.ckpt", protect=(source,))
    assert source.read_bytes() == before


def test_fine_tuning_writes_last_and_best_by_eval_metric(tmp_path):
    ms.set_seed(2)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 16), nn.ReLU(), nn.Dense(16, 10))
    source = save_atomic(net, tmp_path / "source.ckpt")
    source_bytes = source.read_bytes()
    runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                    nn.Adam(net.trainable_params(), 0.01), digits(0, 128), digits(1000, 64),
                    curves=LiveCurves(display=False), run_dir=tmp_path / "run", source_checkpoint=source)
    runner.fit(3)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.ckpt", "last.ckpt"]
    last = ms.load_checkpoint(str(run / "last.ckpt"))
    best = ms.load_checkpoint(str(run / "best.ckpt"))
    epochs = runner.curves.epochs
    assert float(last["epoch"].asnumpy()) == 3 and float(last["step"].asnumpy()) == 12
    assert float(last["accuracy"].asnumpy()) == pytest.approx(epochs["eval_accuracy"].iloc[-1])
    assert float(best["accuracy"].asnumpy()) == pytest.approx(epochs["eval_accuracy"].max())
    # the last checkpoint holds the network as it is now
    for name, param in net.parameters_and_names():
        assert np.array_equal(last[name].asnumpy(), param.asnumpy())
    assert source.read_bytes() == source_bytes


WRITER = textwrap.dedent("""
    import os, sys
    os.environ["GLOG_v"] = "3"
    import mindspore as ms, numpy as np
    from mindspore import nn
    from ms_notebook.runs.checkpoints import save_atomic
    net = nn.Dense(1500, 1500)
    i = 0
    while True:
        i += 1
        net.bias.set_data(ms.Tensor(np.full((1500,), i, np.float32)))
        save_atomic(net, sys.argv[1], {"epoch": i})
        print(i, flush=True)
""")


def _kill_when(process: subprocess.Popen, ready, timeout_s: float = 30.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_sigkill_while_writing_leaves_the_previous_checkpoint_readable(tmp_path):
    """Kills at random moments and kills aimed at a write in progress (a temporary file exists): after each,
    the last checkpoint is whole and the leftovers are cleaned. Aimed kills repeat until one lands mid-write,
    so the crash is exercised on a machine of any speed."""
    target = tmp_path / "last.ckpt"
    killed_mid_write = 0
    rng = random.Random(7)
    for attempt in range(16):
        aimed = attempt % 2 == 1
        if attempt >= 4 and killed_mid_write:
            break
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                                   text=True, env={**os.environ, "GLOG_v": "3"})
        assert process.stdout.readline().strip() == "1"  # one complete checkpoint exists
        if aimed:
            _kill_when(process, lambda: any(tmp_path.glob(".tmp-*")))
        else:
            time.sleep(rng.uniform(0.05, 0.4))
            _kill_when(process, lambda: True)
        leftovers = list(tmp_path.glob(".tmp-*"))
        killed_mid_write += bool(leftovers)
        loaded = ms.load_checkpoint(str(target))
        epoch = int(loaded["epoch"].asnumpy())
        assert epoch >= 1
        assert np.all(loaded["bias"].asnumpy() == epoch)  # a whole, consistent checkpoint
        assert clean_temporaries(tmp_path) == len(leftovers)
    assert killed_mid_write >= 1, "no kill landed during a write; the test did not exercise the crash"


def test_run_checkpoints_rejects_a_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        RunCheckpoints(tmp_path, mode="largest")
