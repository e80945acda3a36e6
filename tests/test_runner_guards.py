"""Runs that never lie: one start at a time, run_dir checked first, a non-finite loss stops the run and never
becomes a checkpoint, a stopped evaluation is marked partial. Real MindSpore training on digits."""

from __future__ import annotations

import json
import sys
import threading

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from mindspore.dataset import GeneratorDataset, NumpySlicesDataset

from ms_notebook import open_checkpoint
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import IDLE, TRAINING, NonFiniteLossError, RunError, Runner
from tests.digits_data import digits

pytestmark = pytest.mark.slow


def make_runner(train=None, **kwargs) -> Runner:
    ms.set_seed(2)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 10))  # no ReLU: MindSpore's ReLU maps NaN to 0
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9)
    return Runner(net, loss, opt, train or digits(0, 128), digits(1000, 64), curves=LiveCurves(display=False),
                  **kwargs)


def poisoned(batch_with_nan: int, batches: int = 4):
    """Digits in batches of 32 where one batch carries a NaN pixel: its loss is NaN, exactly there."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images[: 32 * batches] / 16.0).astype(np.float32)[:, None]
    images[32 * batch_with_nan] = np.nan
    labels = data.target[: 32 * batches].astype(np.int32)
    return lambda: NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(32)


def test_two_threads_cannot_both_start_a_run():
    runner = make_runner()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a check-then-set race shows
    try:
        for _ in range(200):
            barrier, wins, losses = threading.Barrier(2), [], []

            def start(barrier=barrier, wins=wins, losses=losses):
                barrier.wait()
                try:
                    runner._begin(TRAINING)
                    wins.append(1)
                except RuntimeError:
                    losses.append(1)

            threads = [threading.Thread(target=start) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert (len(wins), len(losses)) == (1, 1)
            runner._set_state(IDLE)
    finally:
        sys.setswitchinterval(old)
    # through the public API: the second start while the first runs is refused
    runner.start_fit(1)
    with pytest.raises(RuntimeError, match="already in progress"):
        runner.start_fit(1)
    assert runner.wait(timeout=120)


def test_a_run_dir_that_cannot_be_written_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for bad in (blocker, blocker / "run"):
        runner = make_runner(run_dir=bad)
        with pytest.raises(RunError, match=f"run_dir {bad} is not writable"):
            runner.start_fit(1)
        assert runner.state == IDLE and runner._thread is None and len(runner.history) == 0
        with pytest.raises(RunError, match="not writable"):
            runner.fit(1)
    runner = make_runner(run_dir=tmp_path / "fresh" / "run")
    runner.fit(1)
    assert runner.checkpoints.last_path.exists()
    assert not list((tmp_path / "fresh" / "run").glob(".tmp-*"))


def test_a_nan_loss_stops_the_run_and_never_replaces_the_checkpoints(tmp_path):
    log = tmp_path / "metrics.jsonl"
    runner = make_runner(run_dir=tmp_path / "run")
    runner.curves = LiveCurves(display=False, log_path=log)
    runner.fit(1)  # a clean epoch first: last.ckpt and best.ckpt from finite weights
    best, last = runner.checkpoints.best_path, runner.checkpoints.last_path
    saved = {path: path.read_bytes() for path in (best, last)}

    runner.train_data = poisoned(batch_with_nan=2)
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 1, step 3 .*lower the learning rate"):
        runner.fit(3)
    assert len(runner.history) == 4 + 3  # stopped right after the NaN step
    assert {path: path.read_bytes() for path in (best, last)} == saved
    assert runner.checkpoints.refused and "not finite" in runner.checkpoints.refused[-1]
    assert open_checkpoint(best)["epoch"] == 1
    assert "NaN" not in log.read_text()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert steps[-1]["loss"] is None and all(isinstance(r["loss"], float) for r in steps[:-1])
    assert isinstance(runner.error, NonFiniteLossError) and not runner.running


def test_stop_on_nonfinite_false_trains_on_and_says_so(tmp_path):
    runner = make_runner(train=poisoned(batch_with_nan=1), run_dir=tmp_path / "run", stop_on_nonfinite=False)
    runner.fit(1)
    assert len(runner.history) == 4
    assert "not finite at 3 steps, first at epoch 1, step 2" in runner.notice  # NaN weights after step 2
    assert not runner.checkpoints.best_path.exists() and not runner.checkpoints.last_path.exists()


def test_a_stopped_evaluation_is_marked_partial_and_not_kept():
    runner = make_runner()
    full = runner.evaluate()
    assert not full.partial and runner.last_eval == dict(full)
    images = np.random.default_rng(0).random((256, 1, 8, 8)).astype(np.float32)

    def rows():
        for i in range(len(images)):
            if i == 0:
                runner.stop()  # the user presses Stop as the evaluation starts
            yield images[i], np.int32(i % 10)

    runner.eval_data = lambda: GeneratorDataset(rows, ["image", "label"], shuffle=False).batch(8)
    epochs_before = len(runner.curves.epochs)
    result = runner.evaluate()
    assert result.partial and 0 < result.batches < result.total == 32
    assert "partial" in repr(result) and "stopped after" in runner.notice
    assert runner.last_eval == dict(full)  # the partial metrics did not replace the complete ones
    assert len(runner.curves.epochs) == epochs_before  # and are not a point on the curves


def test_a_changed_learning_rate_reaches_the_training_step_in_pynative_mode_too():
    runner = make_runner(mode="pynative")
    runner.fit(1)
    runner.set_learning_rate(1e-9)  # Parameter.set_data would be ignored by the cached PYNATIVE step
    before = {p.name: p.asnumpy().copy() for p in runner.net.get_parameters()}
    runner.fit(1)
    moved = max(float(np.abs(p.asnumpy() - before[p.name]).max()) for p in runner.net.get_parameters())
    assert moved < 1e-6
    assert runner.history["lr"].dropna().iloc[-1] == pytest.approx(1e-9)
