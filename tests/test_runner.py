"""Runner: real MindSpore fine-tuning on digits, blocking and in the background, with Stop and failures."""

from __future__ import annotations

import math
import threading
import time

import mindspore as ms
import pytest
from mindspore import nn

from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import RunError, Runner
from tests.digits_data import digits

pytestmark = pytest.mark.slow


class TinyNet(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.dense1 = nn.Dense(64, 32)
        self.relu = nn.ReLU()
        self.dense2 = nn.Dense(32, 10)

    def construct(self, x):
        return self.dense2(self.relu(self.dense1(self.flatten(x))))




def make_runner(train_count: int = 192, eval_count: int = 96, **kwargs) -> Runner:
    ms.set_seed(1)
    net = TinyNet()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9)
    return Runner(net, loss, opt, digits(0, train_count), digits(1000, eval_count),
                  curves=LiveCurves(display=False), **kwargs)


def test_history_has_one_row_per_step_with_finite_losses():
    runner = make_runner()
    history = runner.fit(2)
    assert len(history) == 2 * 6  # 192 samples / batch 32 = 6 steps per epoch
    assert list(history["step"]) == list(range(1, 13))
    assert all(math.isfinite(v) for v in history["loss"])
    assert history["epoch"].tolist() == [1] * 6 + [2] * 6
    # epoch columns are filled only on each epoch's last step
    assert history["eval_accuracy"].notna().tolist() == [False] * 5 + [True] + [False] * 5 + [True]
    assert history["lr"].dropna().round(6).unique().tolist() == [0.05]
    assert (history["wall_time"].diff().dropna() >= 0).all()


def test_epoch_metrics_equal_model_eval_on_the_same_data():
    runner = make_runner()
    runner.fit(1)
    recorded = runner.history["eval_accuracy"].dropna().iloc[-1]
    again = runner.model.eval(digits(1000, 96)())
    assert recorded == pytest.approx(again["accuracy"], abs=1e-9)
    assert runner.evaluate()["accuracy"] == pytest.approx(again["accuracy"], abs=1e-9)


def test_training_lowers_the_loss():
    runner = make_runner()
    history = runner.fit(4)
    epochs = history["train_loss"].dropna().tolist()
    assert epochs[-1] < epochs[0]


def test_stop_during_an_epoch_ends_the_run_within_one_step():
    runner = make_runner(train_count=640)  # 20 steps per epoch
    stopped_at: dict[str, int] = {}

    def stop_after_three(event, run):
        if event == "step" and run.progress()["step"] == 3 and "step" not in stopped_at:
            stopped_at["step"] = 3
            threading.Thread(target=run.stop).start()
            time.sleep(0.2)  # the stop lands while step 4 has not started yet

    runner.add_listener(stop_after_three)
    runner.start_fit(3)
    assert runner.wait(timeout=120)
    assert not runner.running
    steps = len(runner.history)
    assert 3 <= steps <= 4, f"ran {steps} steps after stop at step 3"
    # the network is consistent: it evaluates and trains again
    assert 0.0 <= runner.evaluate()["accuracy"] <= 1.0
    runner.fit(1)
    assert len(runner.history) == steps + 20


def test_background_run_keeps_the_caller_responsive():
    runner = make_runner(train_count=640)
    runner.start_fit(2)
    started = time.perf_counter()
    ticks = 0
    while runner.running:
        ticks += 1
        time.sleep(0.01)
    assert ticks > 10  # the caller kept running while training
    assert time.perf_counter() - started > 0
    runner.wait()
    assert len(runner.history) == 40


def test_failing_run_is_surfaced_and_the_process_lives_on():
    def broken_dataset():
        raise OSError("the data folder is gone")

    runner = make_runner()
    runner.train_data = broken_dataset
    runner.start_fit(1)
    with pytest.raises(RunError, match="data folder is gone"):
        runner.wait(timeout=60)
    assert isinstance(runner.error, OSError)
    assert "broken_dataset" in runner.error_text
    assert not runner.running
    # blocking fit raises the same way, and the runner still works afterwards
    with pytest.raises(RunError):
        runner.fit(1)
    runner.train_data = digits(0, 64)
    runner.fit(1)
    assert runner.error is None
    assert len(runner.history) == 2


def test_actions_follow_the_run_state():
    runner = make_runner(train_count=640)
    assert runner.actions() == {"evaluate": True, "fit": True, "stop": False, "device": True}
    seen = []
    runner.add_listener(lambda event, run: seen.append(run.actions()) if event == "step" else None)
    runner.fit(1)
    assert seen and all(a == {"evaluate": False, "fit": False, "stop": True, "device": False} for a in seen)
    assert runner.actions() == {"evaluate": True, "fit": True, "stop": False, "device": False}
    runner.eval_data = None
    assert runner.actions()["evaluate"] is False


def test_learning_rate_change_is_used_by_the_next_run():
    runner = make_runner()
    runner.set_learning_rate(0.01)
    assert runner.learning_rate() == pytest.approx(0.01)
    history = runner.fit(1)
    assert history["lr"].dropna().round(6).unique().tolist() == [0.01]
    with pytest.raises(ValueError, match="positive"):
        runner.set_learning_rate(-1)
