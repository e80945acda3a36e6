"""The seed scenario with real training: new 5-class head on a 10-class pretrained CNN, frozen backbone,
BN stats, optimizer state (Momentum and Adam), the freeze-before-optimizer trap, and to_code() agreeing
with apply()."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPlan, open_checkpoint
from tests.transfer_support import SmallNet, model_train, save_pretrained, train_steps, values

BN_STATS = (
    "block1.bn.moving_mean",
    "block1.bn.moving_variance",
    "block2.bn.moving_mean",
    "block2.bn.moving_variance",
)


@pytest.fixture(scope="module")
def momentum_ckpt(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("transfer") / "momentum.ckpt")
    save_pretrained(path, "momentum")
    return path


@pytest.fixture(scope="module")
def adam_ckpt(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("transfer") / "adam.ckpt")
    save_pretrained(path, "adam")
    return path


def _momentum(params):
    return nn.Momentum(params, learning_rate=0.05, momentum=0.9, weight_decay=1e-3)


def test_new_head_trains_while_frozen_backbone_stays_bit_identical(momentum_ckpt):
    net = SmallNet(5)
    report = TransferPlan(net, momentum_ckpt).freeze_backbone().apply(optimizer=_momentum)
    assert report.skipped == {
        "head.weight": "shape mismatch: checkpoint (10, 16) vs network (5, 16)",
        "head.bias": "shape mismatch: checkpoint (10,) vs network (5,)",
    }
    assert [p.name for p in report.optimizer.parameters] == ["head.weight", "head.bias"]
    assert report.state_loaded == []
    assert report.state_dropped["global_step"] == "no parameter state carried over: the step restarts"
    assert report.state_dropped["moments.head.weight"] == "head.weight is reshaped (shape mismatch)"
    before = values(net)
    model_train(net, report.optimizer, steps=4, num_classes=5)
    after = values(net)
    for name in before:
        if name.startswith("head."):
            assert not np.array_equal(after[name], before[name]), name
        else:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_without_freeze_bn_stats_model_train_updates_frozen_batchnorm_statistics(momentum_ckpt):
    net = SmallNet(5)
    report = (
        TransferPlan(net, momentum_ckpt).freeze_backbone().apply(optimizer=_momentum, freeze_bn_stats=False)
    )
    assert report.frozen_batchnorm == []
    net.set_train(False)  # what people try; Model.train undoes it
    before = values(net)
    model_train(net, report.optimizer, steps=4, num_classes=5)
    after = values(net)
    for name in BN_STATS:
        assert not np.array_equal(after[name], before[name]), name
    for name in ("block1.conv.weight", "block1.bn.gamma", "block3.dense.weight"):
        np.testing.assert_array_equal(after[name], before[name])


def test_optimizer_built_before_freezing_keeps_updating_frozen_weights_but_the_plans_does_not(momentum_ckpt):
    # The trap, by hand: optimizer first, then requires_grad=False; momentum and weight decay still move it.
    raw = SmallNet(5)
    ms.load_param_into_net(
        raw,
        {
            k: v
            for k, v in ms.load_checkpoint(momentum_ckpt).items()
            if not k.startswith(("head", "moments", "global", "learning", "momentum"))
        },
        strict_load=True,
    )
    opt = _momentum(raw.trainable_params())
    train_steps(raw, opt, steps=1, num_classes=5)
    for p in raw.get_parameters():
        if not p.name.startswith("head"):
            p.requires_grad = False
    frozen_before = raw.block3.dense.weight.asnumpy().copy()
    train_steps(raw, opt, steps=2, num_classes=5)
    assert not np.array_equal(raw.block3.dense.weight.asnumpy(), frozen_before)

    net = SmallNet(5)
    report = TransferPlan(net, momentum_ckpt).freeze_backbone().apply(optimizer=_momentum)
    before = values(net)
    train_steps(net, report.optimizer, steps=3, num_classes=5)
    np.testing.assert_array_equal(net.block3.dense.weight.asnumpy(), before["block3.dense.weight"])


@pytest.mark.parametrize(
    ("kind", "factory", "prefixes"),
    [
        ("momentum", _momentum, ("moments",)),
        ("adam", lambda params: nn.Adam(params, learning_rate=0.01), ("moment1", "moment2")),
    ],
)
def test_optimizer_state_is_loaded_for_unchanged_trainable_params_and_dropped_for_the_new_head(
    kind, factory, prefixes, momentum_ckpt, adam_ckpt
):
    path = momentum_ckpt if kind == "momentum" else adam_ckpt
    ck = open_checkpoint(path)
    net = SmallNet(5)
    report = TransferPlan(net, path).train_last(2).apply(optimizer=factory)
    state = {p.name: p.asnumpy() for _, p in report.optimizer.parameters_and_names()}
    for prefix in prefixes:
        for name in ("block3.dense.weight", "block3.dense.bias"):
            key = f"{prefix}.{name}"
            assert np.abs(ck[key]).sum() > 0
            np.testing.assert_array_equal(state[key], ck[key])
            assert key in report.state_loaded
        for name in ("head.weight", "head.bias"):
            key = f"{prefix}.{name}"
            assert not np.any(state[key])
            assert report.state_dropped[key] == f"{name} is reshaped (shape mismatch)"
        assert report.state_dropped[f"{prefix}.block1.conv.weight"] == "block1.conv.weight is frozen"
    np.testing.assert_array_equal(state["global_step"], ck["global_step"])
    if kind == "adam":
        np.testing.assert_array_equal(state["beta1_power"], ck["beta1_power"])
    train_steps(net, report.optimizer, steps=2, num_classes=5)  # the loaded optimizer really trains


@pytest.mark.parametrize(
    ("select", "opt_code"),
    [
        (
            lambda plan: plan.keep_init("block3.dense.bias").train_last(2).freeze("head.bias"),
            "nn.Momentum(params, learning_rate=0.05, momentum=0.9)",
        ),
        (lambda plan: plan.freeze_backbone(), "nn.Adam(params, learning_rate=0.01)"),
        (lambda plan: plan.train_last(2), "nn.Adam(params, learning_rate=0.01)"),
    ],
    ids=["train_last_momentum", "freeze_backbone_adam", "adam_over_momentum_checkpoint"],
)
def test_to_code_does_what_apply_does(select, opt_code, momentum_ckpt):
    def plan_for(net):
        return select(TransferPlan(net, momentum_ckpt))

    def factory(params):
        return eval(opt_code, {"nn": nn, "params": params})

    ms.set_seed(7)
    applied = SmallNet(5)
    ms.set_seed(7)
    fresh = SmallNet(5)
    code = plan_for(SmallNet(5)).to_code(optimizer=opt_code)
    assert "ms_notebook" not in code
    report = plan_for(applied).apply(optimizer=factory)
    namespace = {"net": fresh}
    exec(compile(code, "<to_code>", "exec"), namespace)
    got, want = values(fresh), values(applied)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert {p.name: p.requires_grad for p in fresh.get_parameters()} == {
        p.name: p.requires_grad for p in applied.get_parameters()
    }
    assert [c.use_batch_statistics for _, c in fresh.cells_and_names() if isinstance(c, nn.BatchNorm2d)] == [
        False,
        False,
    ]
    code_state = {p.name: p.asnumpy() for _, p in namespace["optimizer"].parameters_and_names()}
    plan_state = {p.name: p.asnumpy() for _, p in report.optimizer.parameters_and_names()}
    assert code_state.keys() == plan_state.keys()
    for name in plan_state:
        np.testing.assert_array_equal(code_state[name], plan_state[name], err_msg=name)


GRAPH_SCRIPT = """
import sys, tempfile, os
import numpy as np
import mindspore as ms
from mindspore import nn
ms.set_context(mode=ms.GRAPH_MODE)
from ms_notebook import TransferPlan
from tests.transfer_support import SmallNet, model_train, save_pretrained, values
path = os.path.join(tempfile.mkdtemp(), "graph.ckpt")
save_pretrained(path, "momentum", steps=2)
net = SmallNet(5)
report = TransferPlan(net, path).freeze_backbone().apply(
    optimizer=lambda p: nn.Momentum(p, 0.05, 0.9, weight_decay=1e-3))
before = values(net)
model_train(net, report.optimizer, steps=3, num_classes=5)
after = values(net)
changed = sorted(n for n in before if not np.array_equal(before[n], after[n]))
print("CHANGED", changed)
"""


def test_frozen_backbone_and_bn_statistics_hold_in_graph_mode(tmp_path):
    """GRAPH mode compiles the train step once: freezing before building the optimizer must hold there."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GLOG_v": "3", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", GRAPH_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # only the new head trains: conv/BN/dense weights and BN moving statistics are bit-identical
    assert "CHANGED ['head.bias', 'head.weight']" in done.stdout


def test_a_second_plan_on_the_same_network_undoes_the_first_plans_freeze(momentum_ckpt):
    net = SmallNet(5)
    TransferPlan(net, momentum_ckpt).freeze_backbone().apply()
    assert not net.block1.conv.weight.requires_grad
    assert net.block1.bn.use_batch_statistics is False

    plan = TransferPlan(net, momentum_ckpt)  # defaults: freeze nothing
    assert "block1.conv.weight" in plan.trainable
    plan.apply()
    assert net.block1.conv.weight.requires_grad
    assert net.block1.bn.use_batch_statistics is None  # the BatchNorm default again
    assert not net.block1.bn.moving_mean.requires_grad  # moving statistics never become trainable


@pytest.mark.slow
@pytest.mark.parametrize("lr", [None, slice(0.001, 0.02)], ids=["one_rate", "discriminative_rates"])
def test_functional_code_runs_as_written_and_trains_as_apply_and_the_same_loop(lr, momentum_ckpt, tmp_path):
    """to_code(style="functional"): MindSpore 2.x's value_and_grad loop, run from a file as a user would, ends
    with the same frozen and trained parameters as apply() followed by the tutorial's own step and loop."""
    import runpy

    import mindspore.dataset as ds

    from ms_notebook.runs.curves import LiveCurves
    from ms_notebook.runs.loop import build_train_step
    from tests.transfer_support import digits as small_digits

    def datasets():
        x, y = small_digits(32 * 4, 5, seed=1)
        return ds.NumpySlicesDataset({"image": x, "label": y}, shuffle=False).batch(32)

    opt_code = "nn.Momentum(params, learning_rate=0.05, momentum=0.9)"
    ms.set_seed(7)
    applied = SmallNet(5)
    ms.set_seed(7)
    fresh = SmallNet(5)
    start = values(applied)
    code = TransferPlan(SmallNet(5), momentum_ckpt).freeze_backbone().to_code(
        optimizer=opt_code, style="functional", epochs=2, lr=lr)
    assert "value_and_grad" in code and "requires_grad = False" in code and "curves.log(" in code
    script = tmp_path / "lesson.py"
    script.write_text(code)
    namespace = runpy.run_path(str(script), init_globals={
        "net": fresh, "train_dataset": datasets(), "eval_dataset": datasets()})
    assert len(namespace["curves"].history) == 8 and len(namespace["curves"].epochs) == 2

    report = TransferPlan(applied, momentum_ckpt).freeze_backbone().apply(
        optimizer=lambda params: eval(opt_code, {"nn": nn, "params": params}), lr=lr)
    train_step = build_train_step(applied, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                                  report.optimizer)
    with LiveCurves(display=False) as curves:
        for _ in range(2):
            applied.set_train()
            for image, label in curves.steps(datasets().create_tuple_iterator()):
                curves.log(loss=train_step(image, label))
    got, want = values(fresh), values(applied)
    frozen = {p.name for p in applied.get_parameters() if not p.requires_grad}
    assert frozen and {p.name for p in fresh.get_parameters() if not p.requires_grad} == frozen
    checkpoint = open_checkpoint(momentum_ckpt)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
        if name in frozen and name in checkpoint:
            np.testing.assert_array_equal(got[name], checkpoint[name], err_msg=name)  # frozen: as loaded
    assert any(not np.array_equal(start[n], want[n]) for n in want if n not in frozen)
