"""Discriminative learning rates: lr=slice(lo, hi) -> MindSpore parameter groups, one geometric rate per
block; real training of two mindcv-shaped networks with them, and to_code() building the same optimizer."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPlan
from ms_notebook.transfer.rates import block_rates
from tests.mindcv_shaped import ResNetLike, ViTLike
from tests.transfer_support import SmallNet, digits, model_train, save_pretrained, values


def test_block_rates_follow_fastai():
    assert block_rates(slice(1e-4, 1e-2), 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert block_rates(slice(1e-2), 3) == pytest.approx([1e-3, 1e-3, 1e-2])
    assert block_rates(0.01, 2) == [0.01, 0.01]
    assert block_rates(slice(1e-4, 1e-2), 1) == [1e-2]
    # printed as a person writes them: the geometric spread's float noise is rounded away
    assert block_rates(slice(0.002, 0.02), 4)[-1] == 0.02
    assert block_rates(slice(1e-4, 1e-2), 3) == [1e-4, 1e-3, 1e-2]
    spread = [r for n in range(1, 12) for r in block_rates(slice(0.002, 0.02), n)]
    assert all(repr(r) == f"{r:.12g}" for r in spread)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("rates") / "small.ckpt")
    save_pretrained(path, "momentum")
    return path


def _lr_of(optimizer) -> dict[str, float]:
    return {p.name: float(optimizer.get_lr_parameter(p).asnumpy()) for p in optimizer.parameters}


def test_the_factory_receives_groups_and_each_block_gets_its_rate(small_ckpt):
    received = []

    def factory(params):
        received.append(params)
        return nn.Momentum(params, learning_rate=0.5, momentum=0.9, weight_decay=1e-3)

    net = SmallNet(5)
    plan = TransferPlan(net, small_ckpt).freeze("block1")
    report = plan.apply(optimizer=factory, lr=slice(1e-4, 1e-1))
    groups = received[0]
    assert all(set(g) <= {"params", "lr", "weight_decay"} for g in groups)
    rates = plan.block_rates(slice(1e-4, 1e-1))
    assert rates == pytest.approx({"block1": 1e-4, "block2": 1e-3, "block3": 1e-2, "head": 1e-1})
    lr = _lr_of(report.optimizer)
    assert set(lr) == set(plan.trainable)  # the frozen block1 is in no group
    for name, value in lr.items():
        assert value == pytest.approx(rates[name.split(".")[0]], rel=1e-6), name
    # weight decay exactly as MindSpore applies it to a plain list: none on gamma/beta
    plain = nn.Momentum(net.trainable_params(), 0.5, 0.9, weight_decay=1e-3)
    def decay(opt):
        return dict(zip([p.name for p in opt.parameters], opt.decay_flags, strict=True))

    assert decay(report.optimizer) == decay(plain)
    assert "learning rates 0.001 … 0.1 over 3 blocks" in report.headline()
    assert {g["block"] for g in report.param_groups} == {"block2", "block3", "head"}
    # each group's weight decay as applied: the optimizer's 1e-3, 0.0 for gamma/beta; a number, never NaN
    import pandas as pd

    table = pd.DataFrame(report.param_groups)
    assert not table["weight_decay"].isna().any()
    assert set(table["weight_decay"].round(6)) <= {0.001, 0.0} and (table["weight_decay"] > 0).any()


def test_to_code_builds_the_same_grouped_optimizer(small_ckpt):
    opt_code = "nn.Momentum(params, learning_rate=0.02, momentum=0.9, weight_decay=1e-4)"

    def factory(params):
        return eval(opt_code, {"nn": nn, "params": params})

    ms.set_seed(5)
    applied = SmallNet(5)
    ms.set_seed(5)
    fresh = SmallNet(5)
    lr = slice(1e-3, 1e-1)
    report = TransferPlan(applied, small_ckpt).train_last(3).apply(optimizer=factory, lr=lr)
    code = TransferPlan(SmallNet(5), small_ckpt).train_last(3).to_code(optimizer=opt_code, lr=lr)
    assert "PARAM_GROUPS = [" in code
    assert "0000000" not in code  # rates as written by a person (0.01), no float noise
    namespace = {"net": fresh}
    exec(compile(code, "<to_code>", "exec"), namespace)
    built = namespace["optimizer"]
    assert _lr_of(built) == pytest.approx(_lr_of(report.optimizer))
    assert list(built.decay_flags) == list(report.optimizer.decay_flags)
    want = {p.name: p.asnumpy() for _, p in report.optimizer.parameters_and_names()}
    got = {p.name: p.asnumpy() for _, p in built.parameters_and_names()}
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert values(fresh).keys() == values(applied).keys()


def _pretrain(cls, path: str, steps: int = 3) -> None:
    ms.set_seed(0)
    net = cls(10)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean")), opt)
    step.set_train(True)
    x, y = digits(32 * steps, 10)
    for i in range(steps):
        step(ms.Tensor(x[i * 32:(i + 1) * 32]), ms.Tensor(y[i * 32:(i + 1) * 32]))
    ms.save_checkpoint(step, path)


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "last"), [(ResNetLike, 3), (ViTLike, 4)], ids=["resnet-like", "vit-like"])
def test_discriminative_rates_train_mindcv_shaped_networks_with_the_frozen_part_fixed(cls, last, tmp_path):
    path = str(tmp_path / f"{cls.__name__}.ckpt")
    _pretrain(cls, path)
    net = cls(5)
    plan = TransferPlan(net, path).train_last(last)
    frozen_blocks = plan.blocks[: len(plan.blocks) - last]
    report = plan.apply(optimizer=lambda params: nn.Momentum(params, 0.05, 0.9), lr=slice(1e-3, 5e-2))
    rates = plan.block_rates(slice(1e-3, 5e-2))
    block_of = {n: b.path for b in plan.block_list for n in b.names}
    for name, value in _lr_of(report.optimizer).items():
        assert value == pytest.approx(rates[block_of[name]], rel=1e-6)
    before = values(net)
    model_train(net, report.optimizer, steps=3, num_classes=5)
    after = values(net)
    for name in before:
        moved = not np.array_equal(after[name], before[name])
        if block_of[name] in frozen_blocks:
            assert not moved, f"{name} in frozen {block_of[name]} moved"
    trained = [n for n in plan.trainable]
    assert sum(not np.array_equal(after[n], before[n]) for n in trained) >= len(trained) // 2
