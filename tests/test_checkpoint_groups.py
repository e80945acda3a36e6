"""Groups (weights / optimizer / extra) for every optimizer MindSpore 2.10 and mindcv ship, in both formats.

Each optimizer takes a real training step on a small network (or none where the CPU has no kernel for it:
Lamb, LARS and the loss-scale cell), is saved with ``save_checkpoint`` as ``.ckpt`` and ``.safetensors``
with appended values, and the index must find exactly the network's parameters as weights, the appended
values as extra and everything else as optimizer state, the same in both formats; ``compare`` then reports
nothing unexpected. The network has a 0-d weight at its root, like CLIP's ``logit_scale``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
import mindspore.experimental.optim as eoptim  # noqa: E402
from mindspore import nn, ops  # noqa: E402

from ms_notebook.checkpoint import open_checkpoint  # noqa: E402
from ms_notebook.checkpoint.compare import compare  # noqa: E402
from ms_notebook.checkpoint.groups import classify  # noqa: E402

APPENDED = {"epoch_num": 2, "best_acc": 0.5}


class ClipLike(nn.Cell):
    """Conv + BatchNorm + Dense, and a trainable 0-d ``logit_scale`` at the root (as in CLIP)."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = ms.Parameter(ms.Tensor(np.float32(2.0)), name="logit_scale")
        self.conv = nn.Conv2d(1, 2, 3, has_bias=True)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Dense(2 * 4 * 4, 3)

    def construct(self, x):
        y = self.fc(self.bn(self.conv(x)).reshape(x.shape[0], -1))
        return y * ops.exp(self.logit_scale)


def _data():
    rng = np.random.default_rng(0)
    return ms.Tensor(rng.standard_normal((2, 1, 4, 4)).astype(np.float32)), ms.Tensor(
        np.array([0, 1], np.int32)
    )


LOSS = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

NN: dict[str, Callable] = {
    "Momentum": lambda p: nn.Momentum(p, 0.1, 0.9),
    "SGD": lambda p: nn.SGD(p, momentum=0.9),
    "Adam": lambda p: nn.Adam(p),
    "LazyAdam": lambda p: nn.LazyAdam(p),
    "AdaMax": lambda p: nn.AdaMax(p),
    "AdamWeightDecay": lambda p: nn.AdamWeightDecay(p),
    "AdamOffload": lambda p: nn.AdamOffload(p),
    "RMSProp": lambda p: nn.RMSProp(p),
    "RMSProp-centered": lambda p: nn.RMSProp(p, centered=True),
    "Adagrad": lambda p: nn.Adagrad(p),
    "ProximalAdagrad": lambda p: nn.ProximalAdagrad(p),
    "Adadelta": lambda p: nn.Adadelta(p),
    "Rprop": lambda p: nn.Rprop(p),
    "ASGD": lambda p: nn.ASGD(p),
    "FTRL": lambda p: nn.FTRL(p),
    "AdaFactor": lambda p: nn.AdaFactor(p),
    "Lamb": lambda p: nn.Lamb(p, 1e-3),
    "LARS": lambda p: nn.LARS(nn.Momentum(p, 0.1, 0.9)),
}
NO_CPU_STEP = {"Lamb", "LARS", "mindcv-lamb", "loss-scale"}  # "Unsupported op ... on CPU"
# kernels that refuse a 0-d parameter: these train everything but logit_scale (still a saved weight)
NO_SCALAR = {"AdaMax", "AdamOffload", "ProximalAdagrad", "FTRL", "mindcv-lion", "mindcv-nadam", "mindcv-adan",
             "mindcv-adamw"}  # fmt: skip
EXPERIMENTAL = [
    "SGD",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "Adagrad",
    "Adadelta",
    "ASGD",
]
MINDCV = ["lion", "nadam", "adan", "adamw", "lamb", "rmsprop", "adagrad", "momentum", "nesterov"]
CASES = [*NN, *(f"experimental-{n}" for n in EXPERIMENTAL), *(f"mindcv-{n}" for n in MINDCV),
         "mindcv-ema", "loss-scale"]  # fmt: skip


def _train_step_cell(case: str) -> tuple[nn.Cell, nn.Cell, set[str]]:
    """(what to save, the network, the names that are the network's weights in the saved file)."""
    # the experimental optimizers' step is a lambda: PYNATIVE, whatever an earlier test in this process chose
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    net = ClipLike()
    x, y = _data()
    weights = {p.name for p in net.get_parameters()}
    if case in NO_SCALAR:
        net.logit_scale.requires_grad = False
    if case.startswith("experimental-"):
        kwargs = {"lr": 0.01}
        name = case.removeprefix("experimental-")
        if name == "SGD":
            kwargs["momentum"] = 0.9
        if name in ("Adam", "AdamW"):
            kwargs["amsgrad"] = True
        opt = getattr(eoptim, name)(net.trainable_params(), **kwargs)
        grad = ms.value_and_grad(lambda a, b: LOSS(net(a), b), None, opt.parameters)
        opt(grad(x, y)[1])
        return opt, net, {p.name for p in net.trainable_params()}  # the optimizer cell holds its parameters
    if case == "mindcv-ema":
        from mindcv.utils.train_step import TrainStep

        opt = nn.Momentum(net.trainable_params(), 0.1, 0.9)
        cell = TrainStep(nn.WithLossCell(net, LOSS), opt, scale_sense=ms.Tensor(1024.0), ema=True)
    elif case.startswith("mindcv-"):
        from mindcv.optim import create_optimizer

        opt = create_optimizer(net.trainable_params(), opt=case.removeprefix("mindcv-"), lr=0.01)
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, LOSS), opt)
    elif case == "loss-scale":
        opt = nn.Momentum(net.trainable_params(), 0.1, 0.9)
        manager = nn.DynamicLossScaleUpdateCell(loss_scale_value=2**12, scale_factor=2, scale_window=1000)
        cell = nn.TrainOneStepWithLossScaleCell(nn.WithLossCell(net, LOSS), opt, scale_sense=manager)
    else:
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, LOSS), NN[case](net.trainable_params()))
    if case not in NO_CPU_STEP:
        cell(x, y)
    return cell, net, weights


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("groups")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_every_optimizer_state_is_optimizer_in_both_formats(folder, case):
    if case.startswith("mindcv"):
        pytest.importorskip("mindcv")
    cell, net, weights = _train_step_cell(case)
    groups = {}
    for fmt in ("ckpt", "safetensors"):
        path = folder / f"{case}.{fmt}"
        ms.save_checkpoint(cell, str(path), format=fmt, append_dict=dict(APPENDED))
        ck = open_checkpoint(path)
        groups[fmt] = {info.name: info.group for info in ck.entries}
        by_group = {
            g: {n for n, grp in groups[fmt].items() if grp == g} for g in ("weights", "optimizer", "extra")
        }
        assert by_group["weights"] == weights, (fmt, by_group["weights"] ^ weights)
        assert by_group["extra"] == set(APPENDED), fmt
        assert by_group["optimizer"] == set(ck) - weights - set(APPENDED), fmt
        assert len(by_group["optimizer"]) >= 2, fmt  # the state really was saved
        assert ck.num_params == sum(int(np.prod(p.shape)) for p in net.get_parameters() if p.name in weights)
        saved = {p.name: (p.shape, p.dtype) for p in net.get_parameters() if p.name in weights}
        report = compare(ck, saved)
        assert report.names("unexpected") == [] and len(report.names("matched")) == len(weights), fmt
    assert groups["ckpt"] == groups["safetensors"]


def test_a_non_scalar_appended_tensor_does_not_flip_the_scalars_before_it(tmp_path):
    net = nn.Dense(3, 2)
    append = {"zzz": 1, "best_acc": 0.875, "table": ms.Tensor(np.ones(3, np.float32)), "lr_now": 0.1}
    for fmt in ("ckpt", "safetensors"):
        path = tmp_path / f"a.{fmt}"
        ms.save_checkpoint(net, str(path), format=fmt, append_dict=dict(append))
        groups = {i.name: i.group for i in open_checkpoint(path).entries}
        assert groups["zzz"] == groups["best_acc"] == groups["lr_now"] == "extra", fmt
        assert groups["weight"] == groups["bias"] == "weights", fmt


def test_a_zero_dim_weight_is_a_weight_in_both_formats_without_optimizer(tmp_path):
    net = ClipLike()
    for fmt in ("ckpt", "safetensors"):
        path = tmp_path / f"clip.{fmt}"
        ms.save_checkpoint(net, str(path), format=fmt, append_dict={"epoch_num": 1})
        groups = {i.name: i.group for i in open_checkpoint(path).entries}
        assert groups["logit_scale"] == "weights" and groups["epoch_num"] == "extra", fmt


def test_an_unknown_optimizer_is_recognised_by_copies_of_the_weights():
    names = ["enc.w", "enc.b", "head.w", "my_state.enc.w", "my_state.enc.b", "my_state.head.w",
             "teacher.enc.w", "teacher.norm.g"]  # fmt: skip
    shapes = [(4, 3), (4,), (2, 4), (4, 3), (4,), (2, 4), (4, 3), (4,)]
    groups = dict(zip(names, classify(names, ["tensor"] * len(names), shapes), strict=True))
    assert {n for n, g in groups.items() if g == "optimizer"} == {
        "my_state.enc.w",
        "my_state.enc.b",
        "my_state.head.w",
    }
    # teacher.* holds a tensor that copies nothing: a module of the network, not optimizer state
    assert groups["teacher.enc.w"] == groups["teacher.norm.g"] == "weights"


def test_optimizer_state_of_a_million_entries_is_found():
    """A million entries (half of them Momentum state) are grouped in one pass over the names."""
    n = 500_000
    names = [f"layers.{i}.w" for i in range(n)] + [f"moments.layers.{i}.w" for i in range(n)]
    shapes = [(2,)] * (2 * n)
    groups = classify(names, ["tensor"] * (2 * n), shapes)
    assert groups[:n] == ["weights"] * n and groups[n:] == ["optimizer"] * n
