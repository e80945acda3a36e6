"""fastai's tools on the digits demo, with real MindSpore training: fine_tune (head first, then everything at
discriminative rates, one run), find_lr (ramp, divergence stop, everything restored) and interpret."""

from __future__ import annotations

import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPlan
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import RunError, Runner

pytestmark = pytest.mark.slow


def momentum(params):
    return nn.Momentum(params, learning_rate=0.02, momentum=0.9)


def transfer_runner(pretrained: str, **kwargs) -> Runner:
    from ms_notebook.demo import DigitsNet, datasets

    net = DigitsNet(5, seed=1)
    plan = TransferPlan(net, pretrained)
    report = plan.apply(optimizer=momentum)
    train, evaluate = datasets("transfer", batch_size=16)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    # PYNATIVE: these runs are a few dozen steps, less than GRAPH mode's compile of every new optimizer
    return Runner(net, loss, report.optimizer, train, evaluate, plan=plan, curves=LiveCurves(display=False),
                  class_names=["5", "6", "7", "8", "9"], mode="pynative", **kwargs)


def _values(net) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def test_fine_tune_trains_the_head_first_then_everything_at_lower_rates_as_one_run(pretrained):
    runner = transfer_runner(pretrained)
    net = runner.net
    start = _values(net)
    after_head: dict[str, np.ndarray] = {}
    bn_during_head: list[object] = []

    def on_epoch(event, run):
        if event == "epoch" and not after_head:
            after_head.update(_values(net))
            bn_during_head.append(net.block1.bn.use_batch_statistics)

    runner.add_listener(on_epoch)
    runner.fine_tune(2, freeze_epochs=1, lr=0.04)
    # phase 1: only the new head moved; the frozen backbone's BatchNorm kept its statistics
    for name, value in start.items():
        moved = not np.array_equal(after_head[name], value)
        assert moved == name.startswith("head."), name
    assert bn_during_head == [False]
    # phase 2: the backbone trains too, at discriminative rates from lr/2/100 to lr/2
    end = _values(net)
    assert not np.array_equal(end["block1.conv.weight"], after_head["block1.conv.weight"])
    opt = runner.optimizer
    rates = {p.name: float(opt.get_lr_parameter(p).asnumpy()) for p in opt.parameters}
    assert rates["head.weight"] == pytest.approx(0.02, rel=1e-6)
    assert rates["block1.conv.weight"] == pytest.approx(0.02 / 100, rel=1e-6)
    assert rates["block1.conv.weight"] < rates["block2.conv.weight"] < rates["block3.dense.weight"]
    assert net.block1.bn.use_batch_statistics is None  # unfrozen: BatchNorm as built again
    # one run on the curves: epochs 1..3, one begin, one phase, one end
    kinds = [r["type"] for r in runner.curves.records()]
    assert kinds.count("begin") == 1 and kinds.count("end") == 1 and kinds.count("phase") == 1
    assert runner.curves.epochs["epoch"].tolist() == [1, 2, 3]
    assert runner.curves.history["step"].is_monotonic_increasing
    assert runner.plan.frozen == []


def test_fine_tune_without_a_factory_says_what_it_needs(pretrained):
    from ms_notebook.demo import DigitsNet, datasets

    net = DigitsNet(5, seed=1)
    runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean"), momentum(net.trainable_params()),
                    *datasets("transfer"), curves=LiveCurves(display=False), mode="pynative")
    assert not runner.can_fine_tune()
    with pytest.raises(RunError, match="optimizer_factory="):
        runner.fine_tune(1)
    # with a factory and no plan: the network's own weights are the backbone, the last block the head
    runner.optimizer_factory = momentum
    before = _values(net)
    runner.fine_tune(1, freeze_epochs=1)
    assert not np.array_equal(_values(net)["block1.conv.weight"], before["block1.conv.weight"])
    assert len(runner.curves.epochs) == 2


def _everything(runner) -> dict[str, np.ndarray]:
    values = _values(runner.net)
    values.update({f"opt:{p.name}": p.asnumpy().copy() for _, p in runner.optimizer.parameters_and_names()})
    return values


def test_find_lr_ramps_stops_on_divergence_and_restores_weights_and_optimizer_state(pretrained):
    runner = transfer_runner(pretrained)
    runner.fit(1)  # some optimizer state (moments, step) to restore
    before, steps = _everything(runner), len(runner.history)
    result = runner.find_lr(start_lr=1e-4, end_lr=100.0, steps=40)
    after = _everything(runner)
    assert after.keys() == before.keys()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    # the rates really reached the compiled step: the loss blew up before the end of the ramp
    assert result.stopped in ("diverged", "non-finite loss") and result.steps < 40
    assert result.lrs == sorted(result.lrs) and result.lrs[0] == pytest.approx(1e-4)
    assert result.suggestion is not None and 1e-4 < result.suggestion < result.lrs[-1]
    assert result.seconds > 0 and runner.last_lr_find is result
    assert result.figure_png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(result.to_dataframe().columns) == ["lr", "loss", "smoothed"]
    assert len(runner.history) == steps  # the finder's steps are not part of the run's curves
    # the suggestion trains
    runner.set_learning_rate(result.suggestion)
    runner.fit(2)
    losses = runner.curves.epochs["train_loss"].tolist()
    assert losses[-1] < losses[0]


def test_find_lr_refuses_a_schedule():
    from ms_notebook.demo import DigitsNet, datasets

    net = DigitsNet(5, seed=1)
    schedule = nn.Momentum(net.trainable_params(), learning_rate=[0.1] * 5 + [0.01] * 100, momentum=0.9)
    runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean"), schedule, *datasets("transfer"),
                    curves=LiveCurves(display=False))
    with pytest.raises(RunError, match="learning-rate schedule"):
        runner.find_lr(steps=5)


def test_interpret_gives_confusion_per_class_accuracy_and_top_losses(pretrained):
    from ms_notebook.demo import arrays

    runner = transfer_runner(pretrained)
    runner.fit(2)
    result = runner.interpret()
    x_test, y_test = arrays("transfer", "test")
    confusion = result.confusion()
    assert confusion.to_numpy().sum() == len(y_test)
    assert list(confusion.index) == ["5", "6", "7", "8", "9"]
    np.testing.assert_array_equal(confusion.to_numpy().sum(axis=1), np.bincount(y_test, minlength=5))
    assert result.accuracy == pytest.approx(runner.evaluate()["accuracy"], abs=1e-9)
    per_class = result.per_class()
    assert per_class["accuracy"].tolist() == pytest.approx(
        (np.diag(confusion.to_numpy()) / confusion.to_numpy().sum(axis=1)).tolist())
    top = result.top_losses(9)
    assert top["loss"].is_monotonic_decreasing and len(top) == 9
    worst = int(top["index"].iloc[0])
    assert top["true"].iloc[0] == str(5 + y_test[worst])
    np.testing.assert_array_equal(result.kept_inputs[worst], x_test[worst])
    assert result.top_losses_png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Interpretation" in result._repr_html_() and runner.last_interpretation is result
