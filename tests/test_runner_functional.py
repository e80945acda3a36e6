"""Runner (and the Dashboard on it) running your own MindSpore 2.x train_step instead of Model.train:
evaluate, fit with run checkpoints, Stop, find_lr restoring everything, fine_tune rebuilding the step over the
parameters it unfreezes, in GRAPH with @jit and in PYNATIVE."""

from __future__ import annotations

import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from mindspore.train import Model

from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import RunError, Runner
from ms_notebook.widgets.dashboard import Dashboard
from tests.digits_data import digits

pytestmark = pytest.mark.slow


class Small(nn.Cell):
    """Two blocks, so a plan can freeze the first (the backbone) and train the head."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.body = nn.Dense(64, 32)
        self.relu = nn.ReLU()
        self.head = nn.Dense(32, 10)

    def construct(self, x):
        return self.head(self.relu(self.body(self.flatten(x))))


def step_factory(net, loss_fn, jit: bool):
    """The tutorial's step, built for a given optimizer (what Runner(make_train_step=...) takes)."""

    def make_train_step(optimizer):
        def forward_fn(data, label):
            logits = net(data)
            return loss_fn(logits, label), logits

        grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

        def train_step(data, label):
            (loss, _), grads = grad_fn(data, label)
            optimizer(grads)
            return loss

        return ms.jit(train_step) if jit else train_step

    return make_train_step


def functional_runner(mode: str = "graph", train_count: int = 320, **kwargs) -> Runner:
    ms.set_seed(5)
    net = Small()
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), 0.05, 0.9)
    make = step_factory(net, loss_fn, jit=mode == "graph")
    return Runner(net, optimizer=optimizer, train_step=make(optimizer), train_data=digits(0, train_count),
                  eval_data=digits(1000, 96), loss_fn=loss_fn, mode=mode, curves=LiveCurves(display=False),
                  make_train_step=make, **kwargs)


def weights(net) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_evaluate_and_fit_run_your_step_with_metrics_and_checkpoints(mode, tmp_path):
    runner = functional_runner(mode, run_dir=tmp_path / "run")
    assert runner.functional
    before = runner.evaluate()
    reference = Model(runner.net, runner.loss_fn, metrics={"accuracy", "loss"}).eval(digits(1000, 96)())
    assert before["accuracy"] == pytest.approx(reference["accuracy"])
    assert before["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    start = weights(runner.net)
    runner.fit(2)
    history = runner.history
    assert history["step"].tolist() == list(range(1, 21)) and history["loss"].notna().all()
    epochs = runner.curves.epochs.dropna(subset=["train_loss"])
    assert epochs["epoch"].tolist() == [1, 2] and epochs["eval_accuracy"].notna().all()
    assert runner.last_eval is not None and runner.progress()["step"] == 20
    assert any(not np.array_equal(start[n], v) for n, v in weights(runner.net).items())
    assert (tmp_path / "run" / "last.ckpt").exists() and (tmp_path / "run" / "best.ckpt").exists()


def test_stop_from_the_dashboard_ends_your_loop_after_the_current_step():
    runner = functional_runner(train_count=1600)
    dash = Dashboard(runner, epochs=20, max_updates_per_s=50)
    dash.fit_button.click()
    deadline = time.monotonic() + 60
    while len(runner.history) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    dash.stop_button.click()
    runner.wait(60)
    steps = len(runner.history)
    assert 5 <= steps < 20 * 50 and not runner.running and runner.error is None
    assert runner.curves.state == "stopped"
    assert "stopped" in dash.status.value
    dash.evaluate_button.click()
    runner.wait(60)
    assert runner.last_eval is not None and "accuracy" in runner.last_eval


def test_find_lr_on_your_step_restores_weights_and_optimizer_state():
    runner = functional_runner(train_count=640)
    runner.fit(1)
    net_before = weights(runner.net)
    opt_before = {p.name: p.asnumpy().copy() for _, p in runner.optimizer.parameters_and_names()}
    result = runner.find_lr(steps=12)
    assert result.steps >= 2 and len(result.lrs) == result.steps
    assert all(np.array_equal(net_before[n], v) for n, v in weights(runner.net).items())
    opt_after = {p.name: p.asnumpy() for _, p in runner.optimizer.parameters_and_names()}
    assert all(np.array_equal(opt_before[n], v) for n, v in opt_after.items())
    assert runner.learning_rate() == pytest.approx(0.05)


def test_fine_tune_rebuilds_your_step_over_the_parameters_each_phase_trains():
    from ms_notebook.transfer import TransferPlan

    runner = functional_runner()
    plan = TransferPlan(runner.net, {p.name: p for p in runner.net.get_parameters()})
    runner.plan = plan
    runner.optimizer_factory = lambda params: nn.Momentum(params, 0.05, 0.9)
    start = weights(runner.net)
    at_phase = {}

    def on_record(record):
        if record["type"] == "phase":  # the head-only epoch just ended
            at_phase.update(weights(runner.net))
            at_phase["trained"] = [p.name for p in runner.optimizer.parameters]

    runner.curves.add_listener(on_record)
    first_step = runner.train_step
    runner.fine_tune(1, freeze_epochs=1, lr=0.05)
    assert at_phase, "fine_tune recorded no phase change"
    assert np.array_equal(at_phase["body.weight"], start["body.weight"])  # frozen in the first phase
    assert not np.array_equal(at_phase["head.weight"], start["head.weight"])
    assert not np.array_equal(weights(runner.net)["body.weight"], at_phase["body.weight"])  # then unfrozen
    assert runner.train_step is not first_step
    assert {"body.weight", "head.weight"} <= set(p.name for p in runner.optimizer.parameters)
    assert [r["type"] for r in runner.curves.records()].count("end") == 1


def test_fine_tune_without_a_way_to_rebuild_the_step_says_what_to_give():
    ms.set_seed(5)
    net = Small()
    optimizer = nn.Momentum(net.trainable_params(), 0.05, 0.9)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = step_factory(net, loss_fn, jit=False)(optimizer)
    runner = Runner(net, optimizer=optimizer, train_step=step, train_data=digits(0, 64),
                    curves=LiveCurves(display=False), optimizer_factory=lambda p: nn.Momentum(p, 0.05, 0.9))
    with pytest.raises(RunError, match="make_train_step"):
        runner.fine_tune(1)
    with pytest.raises(ValueError, match="train_step"):
        Runner(net, train_data=digits(0, 64))
