"""Transfer panel (issue 13, item 5): every trap is said before Apply, in our words; blocks with their share;
discriminative learning rates from the panel to the optimizer and the code."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPanel
from tests.transfer_support import SmallNet, save_pretrained, values


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("traps") / "pretrained.ckpt")
    save_pretrained(path, "momentum")
    return path


def _tick(panel, column, row_id):
    panel.tree.handle_intent({"type": "check", "column": column, "id": row_id})


def momentum(params):
    return nn.Momentum(params, 0.05, 0.9)


def test_unticking_reload_on_a_frozen_block_warns_it_would_stay_at_random_init(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained, optimizer=momentum)
    panel.preset("freeze_backbone")
    assert panel.warnings.value == ""  # a sound plan: nothing to say
    _tick(panel, "reload", "block2")
    text = panel.warnings.value
    assert "Before you apply" in text and "block2: 3 tensors frozen but not reloaded" in text
    assert "initial (random) values" in text
    # the BatchNorm of that block would also normalise with mean 0 / variance 1
    assert "block2.bn: BatchNorm statistics fixed but not reloaded" in text
    panel.freeze_bn_stats.value = False
    assert "BatchNorm statistics" not in panel.warnings.value
    _tick(panel, "freeze", "block2")  # unfreezing it answers the warning
    assert panel.warnings.value == ""


def test_freezing_everything_is_said_before_apply_and_apply_says_it_in_our_words(pretrained):
    net = SmallNet(5)
    panel = TransferPanel(net, pretrained, optimizer=momentum)
    for block in ("block1", "block2", "block3", "head"):
        _tick(panel, "freeze", block)
    assert "Nothing to train: every parameter is frozen" in panel.warnings.value
    before = values(net)
    panel.apply_button.click()
    assert "Not applied:" in panel.message.value and "nothing to train" in panel.message.value
    assert "must not be empty" not in panel.message.value
    assert panel.report is None
    for name, value in values(net).items():
        np.testing.assert_array_equal(value, before[name])


def test_blocks_are_listed_with_their_share_and_train_last_moves_through_them(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    view = panel.blocks_view.value
    assert "4 blocks" in view
    for row in panel.plan.block_table():
        assert f"<td>{row['block']}</td>" in view and f"{row['share']:.1f}%" in view
    panel.preset("train_last_1")
    assert "ms-block-trainable'><td>head" in panel.blocks_view.value
    assert "ms-block-frozen'><td>block3" in panel.blocks_view.value


def test_discriminative_rates_go_from_the_panel_to_the_optimizer_and_the_code(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained, optimizer=momentum,
                          optimizer_code="nn.Momentum(params, 0.05, 0.9)")
    assert "PARAM_GROUPS" not in panel.code
    panel.discriminative.value = True
    panel.lr_low.value, panel.lr_high.value = 1e-3, 1e-1
    assert "PARAM_GROUPS = [" in panel.code and "learning rate" in panel.blocks_view.value
    panel.apply_button.click()
    opt = panel.optimizer
    rates = {p.name: float(opt.get_lr_parameter(p).asnumpy()) for p in opt.parameters}
    assert rates["block1.conv.weight"] == pytest.approx(1e-3, rel=1e-6)
    assert rates["head.bias"] == pytest.approx(1e-1, rel=1e-6)
    assert "learning rates" in panel.report_view.value
    panel.lr_low.value = 1.0  # lo > hi: no code for a slice MindSpore would refuse, and Apply says why
    assert "PARAM_GROUPS" not in panel.code
    panel.apply_button.click()
    assert "needs lo &lt;= hi" in panel.message.value
