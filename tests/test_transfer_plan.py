"""TransferPlan selection, validation and loading on real MindSpore networks and checkpoints (no training)."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPlan, TransferReport, open_checkpoint
from ms_notebook.transfer import PatternError, TransferError
from tests.transfer_support import SmallNet, save_pretrained, values


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("transfer") / "pretrained.ckpt")
    save_pretrained(path, "momentum")
    return path


def test_status_knows_match_shape_mismatch_and_absent(pretrained):
    params = ms.load_checkpoint(pretrained)
    del params["block3.dense.bias"]
    plan = TransferPlan(SmallNet(5), params)
    assert plan.status["block1.conv.weight"] == "match"
    assert plan.status["block1.bn.moving_mean"] == "match"
    assert plan.status["head.weight"] == "shape_mismatch"
    assert plan.status["block3.dense.bias"] == "absent"
    assert "moments.block1.conv.weight" not in plan.status  # optimizer entries are never network parameters


def test_defaults_reload_every_match_and_freeze_nothing(pretrained):
    plan = TransferPlan(SmallNet(5), pretrained)
    assert set(plan.reloaded) == {n for n, s in plan.status.items() if s == "match"}
    assert "head.weight" not in plan.reloaded
    assert plan.frozen == []
    assert plan.summary()["percent_frozen"] == 0.0


def test_selection_by_exact_name_glob_regex_and_cell_path_is_chainable(pretrained):
    plan = TransferPlan(SmallNet(5), pretrained)
    result = (
        plan.keep_init("block3.*").freeze("block1").freeze("re:^block2\\.conv").unfreeze("block1.bn.beta")
    )
    assert result is plan
    assert "block3.dense.weight" not in plan.reloaded and "block3.dense.bias" not in plan.reloaded
    assert set(plan.frozen) == {"block1.conv.weight", "block1.bn.gamma", "block2.conv.weight"}
    plan.reload("block3.dense.weight")
    assert "block3.dense.weight" in plan.reloaded and "block3.dense.bias" not in plan.reloaded


def test_pattern_that_matches_nothing_is_an_error_listing_close_names(pretrained):
    plan = TransferPlan(SmallNet(5), pretrained)
    with pytest.raises(PatternError, match=r"'blok1'.*close names: .*block1"):
        plan.freeze("blok1")
    with pytest.raises(PatternError, match=r"head\.weight"):
        plan.keep_init("head.weigth")


def test_reloading_a_reshaped_parameter_by_name_is_an_error_with_both_shapes(pretrained):
    plan = TransferPlan(SmallNet(5), pretrained)
    with pytest.raises(TransferError, match=r"checkpoint \(10, 16\) vs network \(5, 16\)"):
        plan.reload("head.weight")


def test_freeze_backbone_freezes_reloaded_and_trains_the_new_head(pretrained):
    plan = TransferPlan(SmallNet(5), pretrained).freeze_backbone()
    assert set(plan.trainable) == {"head.weight", "head.bias"}
    assert plan.frozen_batchnorm() == ["block1.bn", "block2.bn"]


def test_train_last_trains_only_the_last_blocks_in_network_order(pretrained):
    plan = TransferPlan(SmallNet(5), pretrained)
    assert plan.blocks == ["block1", "block2", "block3", "head"]
    plan.train_last(2)
    assert {n.split(".")[0] for n in plan.trainable} == {"block3", "head"}
    assert plan.frozen_batchnorm() == ["block1.bn", "block2.bn"]
    with pytest.raises(TransferError, match="0 <= n <= 4"):
        plan.train_last(5)


def test_apply_loads_exactly_the_selected_tensors_and_sets_requires_grad(pretrained):
    net = SmallNet(5)
    before = values(net)
    ck = open_checkpoint(pretrained)
    report = TransferPlan(net, pretrained).keep_init("block3.dense.bias").freeze("block1").apply()
    after = values(net)
    for name in report.loaded:
        np.testing.assert_array_equal(after[name], ck[name])
    for name in ("block3.dense.bias", "head.weight", "head.bias"):
        np.testing.assert_array_equal(after[name], before[name])
    grads = {p.name: p.requires_grad for p in net.get_parameters()}
    assert grads["block1.conv.weight"] is False and grads["block1.bn.gamma"] is False
    assert grads["block2.conv.weight"] is True and grads["head.weight"] is True
    assert isinstance(report, TransferReport) and report.optimizer is None


def test_excluded_head_never_receives_optimizer_moments(pretrained):
    # The trap, on plain MindSpore: without head.* in the dict, strict_load=False loads moments.head.weight.
    raw_net = SmallNet(10)
    params = ms.load_checkpoint(pretrained)
    for name in ("head.weight", "head.bias"):
        del params[name]
    ms.load_param_into_net(raw_net, params)
    moments = open_checkpoint(pretrained)["moments.head.weight"]
    np.testing.assert_array_equal(raw_net.head.weight.asnumpy(), moments)

    net = SmallNet(10)
    init = net.head.weight.asnumpy().copy()
    report = TransferPlan(net, pretrained).keep_init("head").apply()
    np.testing.assert_array_equal(net.head.weight.asnumpy(), init)
    assert report.skipped["head.weight"] == "not selected"


def test_failed_apply_changes_nothing(pretrained):
    params = ms.load_checkpoint(pretrained)
    net = SmallNet(10)
    plan = TransferPlan(net, params)
    # the dict changes under the plan: block2's conv now has another shape than the network
    params["block2.conv.weight"] = ms.Parameter(
        ms.Tensor(np.zeros((8, 4, 1, 1), np.float32)), "block2.conv.weight"
    )

    # The trap, on plain MindSpore: it raises, but block1 was already overwritten.
    raw = SmallNet(10)
    raw_before = values(raw)
    with pytest.raises(RuntimeError):
        ms.load_param_into_net(raw, params)
    assert not np.array_equal(raw.block1.conv.weight.asnumpy(), raw_before["block1.conv.weight"])

    before = values(net)
    with pytest.raises(TransferError, match=r"nothing was loaded; block2.conv.weight: shape mismatch"):
        plan.apply()
    after = values(net)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)
    assert all(p.requires_grad for p in net.trainable_params())


class _Recording:
    """A Checkpoint wrapper that records which tensors were read (the real index underneath)."""

    def __init__(self, ck):
        self._ck, self.read = ck, []
        self.entries, self.path = ck.entries, ck.path

    def __getitem__(self, name):
        self.read.append(name)
        return self._ck[name]


def test_apply_reads_only_the_selected_tensors_from_the_file(pretrained):
    ck = _Recording(open_checkpoint(pretrained))
    plan = TransferPlan(SmallNet(5), ck).keep_init("block3")
    plan.apply()
    assert sorted(ck.read) == sorted(plan.reloaded)
    assert not any(name.startswith("moments.") for name in ck.read)


def test_bfloat16_checkpoint_loads_with_the_network_dtype(tmp_path):
    src = nn.Dense(4, 3)
    src.weight.set_dtype(ms.bfloat16)
    path = str(tmp_path / "bf16.ckpt")
    ms.save_checkpoint(src, path)
    saved = open_checkpoint(path)["weight"]

    bf16 = nn.Dense(4, 3)
    bf16.weight.set_dtype(ms.bfloat16)
    TransferPlan(bf16, path).apply()
    assert bf16.weight.dtype == ms.bfloat16
    np.testing.assert_array_equal(bf16.weight.float().asnumpy(), saved.astype(np.float32))

    f32 = nn.Dense(4, 3)
    TransferPlan(f32, path).apply()
    assert f32.weight.dtype == ms.float32
    np.testing.assert_array_equal(f32.weight.asnumpy(), saved.astype(np.float32))


def test_report_is_a_table_with_reasons(pretrained):
    params = ms.load_checkpoint(pretrained)
    del params["block3.dense.bias"]
    net = SmallNet(5)
    report = TransferPlan(net, params).keep_init("block1.conv.weight").freeze_backbone().apply()
    frame = report.to_dataframe()
    assert list(frame["name"]) == [p.name for p in SmallNet(5).get_parameters()]
    reasons = dict(zip(frame["name"], frame["reason"], strict=True))
    assert reasons["head.weight"] == "shape mismatch: checkpoint (10, 16) vs network (5, 16)"
    assert reasons["block3.dense.bias"] == "absent from checkpoint"
    assert reasons["block1.conv.weight"] == "not selected"
    assert report.trainable_count == sum(int(p.size) for p in net.trainable_params())
    assert set(report.frozen) == {p.name for p in net.get_parameters() if not p.requires_grad} - {
        n for n in report.loaded if "moving" in n
    }
    assert "shape mismatch" in report._repr_html_() and "<table>" in report._repr_html_()
    assert "head.weight" in repr(report) and "frozen" in repr(report)


def test_checkpoint_path_object_and_dict_give_the_same_plan(pretrained):
    by_path = TransferPlan(SmallNet(5), pretrained).freeze_backbone()
    by_index = TransferPlan(SmallNet(5), open_checkpoint(pretrained)).freeze_backbone()
    by_dict = TransferPlan(SmallNet(5), ms.load_checkpoint(pretrained)).freeze_backbone()
    assert by_path.rows() == by_index.rows() == by_dict.rows()
