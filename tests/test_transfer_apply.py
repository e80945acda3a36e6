"""apply() is all or nothing: every failure path leaves values, requires_grad flags, freeze marks and
BatchNorm settings exactly as they were (compared before and after, on real networks and checkpoints)."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPlan, open_checkpoint
from ms_notebook.transfer import TransferError
from tests.transfer_support import SmallNet, save_pretrained, train_steps

_MARKS = ("_ms_notebook_frozen", "_ms_notebook_use_batch_statistics")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("apply") / "pretrained.ckpt")
    save_pretrained(path, "momentum")
    return path


def state(net: nn.Cell) -> dict:
    """Everything apply() may change: values, requires_grad, freeze marks, BN use_batch_statistics + mark."""
    return {
        "values": {p.name: p.asnumpy().copy() for p in net.get_parameters()},
        "grad": {p.name: p.requires_grad for p in net.get_parameters()},
        "marks": {p.name: getattr(p, _MARKS[0], "unset") for p in net.get_parameters()},
        "bn": {
            name: (cell.use_batch_statistics, getattr(cell, _MARKS[1], "unset"))
            for name, cell in net.cells_and_names()
            if isinstance(cell, nn.BatchNorm2d)
        },
    }


def assert_same(before: dict, after: dict) -> None:
    assert after["grad"] == before["grad"]
    assert after["marks"] == before["marks"]
    assert after["bn"] == before["bn"]
    assert after["values"].keys() == before["values"].keys()
    for name, value in before["values"].items():
        np.testing.assert_array_equal(after["values"][name], value, err_msg=name)


def momentum(params):
    return nn.Momentum(params, learning_rate=0.05, momentum=0.9)


def _applied_once(pretrained: str) -> nn.Cell:
    """A network an earlier plan already changed (backbone frozen, BN fixed): marks and flags are set."""
    net = SmallNet(5)
    TransferPlan(net, pretrained).freeze_backbone().apply(optimizer=momentum)
    return net


def test_a_failing_optimizer_factory_changes_nothing(pretrained):
    net = _applied_once(pretrained)
    before = state(net)

    def broken(params):
        raise ValueError("learning rate schedule not found")

    plan = TransferPlan(net, pretrained).unfreeze("block1", "block2")
    with pytest.raises(TransferError, match=r"optimizer factory failed \(ValueError: learning rate schedule"):
        plan.apply(optimizer=broken)
    assert_same(before, state(net))


def test_nothing_to_train_is_said_in_our_words_before_mindspore_does(pretrained):
    net = SmallNet(10)  # same shapes as the checkpoint: freeze_backbone freezes everything
    plan = TransferPlan(net, pretrained).freeze_backbone()
    assert [w.kind for w in plan.warnings()][:1] == ["nothing_to_train"]
    before = state(net)
    with pytest.raises(TransferError, match="nothing to train") as info:
        plan.apply(optimizer=momentum)
    assert "must not be empty" not in str(info.value)
    assert_same(before, state(net))
    # MindSpore's own message, for comparison: what users saw before
    with pytest.raises(ValueError, match="must not be empty"):
        nn.Momentum([], 0.1, 0.9)


def test_a_factory_that_returns_no_optimizer_or_ignores_its_parameters_changes_nothing(pretrained):
    net = SmallNet(5)
    before = state(net)
    plan = TransferPlan(net, pretrained).freeze_backbone()
    with pytest.raises(TransferError, match="returned list, not a MindSpore optimizer"):
        plan.apply(optimizer=lambda params: list(params))
    # the classic slip: the factory closes over the network and takes *all* its parameters
    with pytest.raises(TransferError, match="built over the parameters the factory receives"):
        plan.apply(optimizer=lambda params: nn.Momentum(net.trainable_params(), 0.05, 0.9))
    assert_same(before, state(net))


class _Unreadable:
    """The real index of a checkpoint, except that some entries cannot be read (a damaged file)."""

    def __init__(self, ck, broken):
        self._ck, self.broken = ck, broken
        self.entries, self.path, self.format = ck.entries, ck.path, ck.format

    def __getitem__(self, name):
        if self.broken(name):
            raise OSError(f"{name}: read past the end of the file")
        return self._ck[name]


def test_an_unreadable_optimizer_moment_changes_nothing(pretrained):
    net = _applied_once(pretrained)
    before = state(net)
    source = _Unreadable(open_checkpoint(pretrained), lambda name: name == "moments.block3.dense.weight")
    plan = TransferPlan(net, source).train_last(2)
    with pytest.raises(TransferError, match=r"optimizer state: moments\.block3\.dense\.weight: cannot read"):
        plan.apply(optimizer=momentum)
    assert_same(before, state(net))


def test_an_unreadable_weight_changes_nothing(pretrained):
    net = SmallNet(5)
    before = state(net)
    source = _Unreadable(open_checkpoint(pretrained), lambda name: name == "block3.dense.bias")
    with pytest.raises(TransferError, match=r"nothing was loaded; block3\.dense\.bias: cannot read"):
        TransferPlan(net, source).freeze_backbone().apply(optimizer=momentum)
    assert_same(before, state(net))


def test_a_global_step_of_the_wrong_shape_is_dropped_with_its_reason(pretrained):
    params = ms.load_checkpoint(pretrained)
    params["global_step"] = ms.Parameter(ms.Tensor(np.array([7, 7], np.int32)), "global_step")
    net = SmallNet(5)
    report = TransferPlan(net, params).train_last(2).apply(optimizer=momentum)
    assert report.state_dropped["global_step"] == "shape mismatch: checkpoint (2,) vs optimizer (1,)"
    assert "moments.block3.dense.weight" in report.state_loaded
    assert report.optimizer.global_step.asnumpy().tolist() == [0]
    train_steps(net, report.optimizer, steps=1, num_classes=5)  # and the optimizer trains


def test_bad_learning_rates_are_refused_before_anything_is_read(pretrained):
    net = SmallNet(5)
    before = state(net)
    plan = TransferPlan(net, pretrained).freeze_backbone()
    for lr, message in [(slice(1e-2, 1e-4), "lo <= hi"), (-0.1, "positive"), (slice(0, 1e-2), "positive"),
                        (slice(1e-4, 1e-2, 2), "no step")]:
        with pytest.raises(ValueError, match=message):
            plan.apply(optimizer=momentum, lr=lr)
    with pytest.raises(TransferError, match="lr needs an optimizer factory"):
        plan.apply(lr=0.01)
    assert_same(before, state(net))


class StrictBN(nn.BatchNorm2d):
    """A BatchNorm that refuses fixed statistics (a user cell may): fails after values and flags changed."""

    @property
    def use_batch_statistics(self):
        return self.__dict__.get("_use_batch_statistics")

    @use_batch_statistics.setter
    def use_batch_statistics(self, value):
        if value is False:
            raise RuntimeError("this BatchNorm always uses batch statistics")
        self.__dict__["_use_batch_statistics"] = value


def test_a_failure_after_loading_restores_every_value_and_flag(pretrained):
    net = SmallNet(5)
    net.block2.bn = StrictBN(8, momentum=0.5)
    net.block2.bn.update_parameters_name("block2.bn.")
    before = state(net)
    plan = TransferPlan(net, pretrained).freeze_backbone()
    assert plan.reloaded  # the failure comes after loading these and freezing their flags
    with pytest.raises(TransferError, match=r"the network was restored") as info:
        plan.apply(optimizer=momentum)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert_same(before, state(net))
    # and the same network takes a plan that does not fix that BatchNorm
    plan.apply(optimizer=momentum, freeze_bn_stats=False)
    np.testing.assert_array_equal(net.block1.conv.weight.asnumpy(), open_checkpoint(pretrained)
                                  ["block1.conv.weight"])
