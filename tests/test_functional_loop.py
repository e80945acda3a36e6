"""MindSpore 2.x's own training loop (value_and_grad + train_step) with LiveCurves: what is logged is what is
kept (history and strict JSON lines), progress counts itself, Stop from a thread, the kernel's interrupt and a
non-finite loss all end the loop cleanly at a step boundary, and checkpoints are written as Runner does."""

from __future__ import annotations

import json
import math
import os
import signal
import threading

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook import LiveCurves, open_checkpoint
from ms_notebook.runs.history import read_jsonl
from tests.digits_data import digits

pytestmark = pytest.mark.slow


def functional(lr: float = 0.05, jit: bool = True):
    """A small network with the tutorial's step: (net, train_step)."""
    ms.set_seed(0)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10))
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), lr, 0.9)

    def forward_fn(data, label):
        logits = net(data)
        return loss_fn(logits, label), logits

    grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

    def train_step(data, label):
        (loss, _), grads = grad_fn(data, label)
        optimizer(grads)
        return loss

    return net, (ms.jit(train_step) if jit else train_step)


def strict_json(path) -> list[dict]:
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in open(path, encoding="utf-8")]


def test_logged_steps_and_epochs_are_the_history_and_the_file(tmp_path):
    _net, train_step = functional()
    data = digits(0, 192)  # 6 batches
    logged = []
    with LiveCurves(log_path=tmp_path / "m.jsonl", display=False, epochs=2) as curves:
        for _ in range(2):
            for image, label in curves.steps(data().create_tuple_iterator()):
                loss = train_step(image, label)
                logged.append(float(loss.asnumpy()))
                curves.log(loss=loss, grad_scale=np.float32(1.5))
            curves.log_epoch(accuracy=0.5 + len(logged) / 100, eval_loss=ms.Tensor(1.25))
            assert curves.progress()["total"] == 12
    history = curves.history
    assert history["loss"].tolist() == pytest.approx(logged)
    assert history["step"].tolist() == list(range(1, 13)) and history["epoch"].tolist() == [1] * 6 + [2] * 6
    assert history["grad_scale"].tolist() == [1.5] * 12
    epochs = curves.epochs
    assert epochs["accuracy"].tolist() == pytest.approx([0.56, 0.62])
    assert epochs["train_loss"].tolist() == pytest.approx([np.mean(logged[:6]), np.mean(logged[6:])])
    assert epochs["eval_loss"].tolist() == [1.25, 1.25]
    records = strict_json(tmp_path / "m.jsonl")
    assert records == read_jsonl(tmp_path / "m.jsonl")
    assert [r["loss"] for r in records if r["type"] == "step"] == pytest.approx(logged)
    assert records[-1]["type"] == "end" and records[-1]["status"] == "finished" == curves.state
    progress = curves.progress()
    assert progress["step"] == 12 and progress["fraction"] == 1.0 and progress["epochs"] == 2


def test_steps_it_was_not_told_about_are_counted_and_log_numbers_its_own():
    curves = LiveCurves(display=False)
    for _ in curves.steps(range(5)):
        pass  # a loop that logs nothing still advances progress
    assert curves.progress()["step"] == 5 and curves.progress()["total"] == 5
    curves.log(loss=1.0, step=100)
    curves.log(loss=np.float64(0.5))
    assert curves.history["step"].tolist() == [100, 101]
    with pytest.raises(ValueError, match="one number"):
        curves.log(loss=np.ones(3))
    curves.finish()
    assert curves.state == "finished"


def test_a_non_finite_loss_stops_the_loop_after_that_step_and_no_best_checkpoint(tmp_path, capsys):
    net, train_step = functional()
    data = digits(0, 320)
    seen = 0
    with LiveCurves(display=False, run_dir=tmp_path / "run") as curves:
        for image, label in curves.steps(data().create_tuple_iterator()):
            seen += 1
            loss = train_step(image, label)
            if seen == 4:
                loss = loss * ms.Tensor(np.nan, ms.float32)  # what a diverging step returns
            curves.log(loss=loss)
        curves.log_epoch(accuracy=0.9)
        written = curves.save_checkpoint(net)
    assert seen == 4 and len(curves.history) == 4
    assert curves.state == "stopped" and "step 4" in curves.notice
    assert "step 4" in capsys.readouterr().err
    assert written["best"] is None and written["last"] is not None  # the weights are finite, the loss was not
    assert not (tmp_path / "run" / "best.ckpt").exists()
    assert curves.records()[-1]["status"] == "stopped"


def test_stop_from_another_thread_ends_steps_at_a_boundary():
    _net, train_step = functional()
    data = digits(0, 1600)  # 50 batches
    curves = LiveCurves(display=False)
    done = []
    for image, label in curves.steps(data().create_tuple_iterator()):
        curves.log(loss=train_step(image, label))
        done.append(1)
        if len(done) == 3:
            threading.Thread(target=curves.stop).start()
            threading.Event().wait(0.5)
    curves.finish()
    assert 3 <= len(done) <= 4 and curves.state == "stopped" and curves.stop_requested
    assert len(curves.history) == len(done)


def test_the_kernels_interrupt_during_steps_is_a_stop_and_a_second_one_aborts():
    _net, train_step = functional()
    data = digits(0, 1600)
    with LiveCurves(display=False) as curves:
        for i, (image, label) in enumerate(curves.steps(data().create_tuple_iterator())):
            curves.log(loss=train_step(image, label))
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)  # what JupyterLab's ■ does to the kernel
    assert len(curves.history) == 3 and curves.state == "stopped"
    assert "interrupt" in curves.stop_reason
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the loop

    again = LiveCurves(display=False)
    with pytest.raises(KeyboardInterrupt):
        for i, _ in enumerate(again.steps(range(1000))):
            again.log(loss=1.0)
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)  # asks for Stop
                os.kill(os.getpid(), signal.SIGINT)  # a second press before the step ended: abort
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_outside_steps_ends_the_with_block_as_stopped_without_a_traceback():
    with LiveCurves(display=False) as curves:
        curves.log(loss=2.0)
        curves.log(loss=1.0)
        raise KeyboardInterrupt
    assert curves.state == "stopped" and len(curves.history) == 2

    with pytest.raises(ZeroDivisionError), LiveCurves(display=False) as failing:
        failing.log(loss=1.0)
        1 / 0  # noqa: B018
    assert failing.state == "failed" and failing.records()[-1]["status"] == "failed"


def test_save_checkpoint_writes_last_and_best_atomically_by_the_metric(tmp_path):
    net, train_step = functional()
    curves = LiveCurves(display=False)
    with pytest.raises(ValueError, match="folder"):
        curves.save_checkpoint(net)
    for accuracy in (0.5, 0.7, 0.6):
        for image, label in curves.steps(digits(0, 64)().create_tuple_iterator()):
            curves.log(loss=train_step(image, label))
        curves.log_epoch(accuracy=accuracy)
        curves.save_checkpoint(net, tmp_path)
    curves.finish()
    last, best = open_checkpoint(tmp_path / "last.ckpt"), open_checkpoint(tmp_path / "best.ckpt")
    assert float(best["accuracy"]) == pytest.approx(0.7) and int(best["epoch"]) == 2
    assert float(last["accuracy"]) == pytest.approx(0.6) and int(last["epoch"]) == 3
    weight = next(name for name in last if name.endswith("weight"))
    assert np.array_equal(last[weight], dict(net.parameters_and_names())[weight].asnumpy())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert math.isfinite(float(last["step"]))
