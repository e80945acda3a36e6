"""The Studio widget model: tabs, Apply builds a Runner over the plan's optimizer, runs overlay, resets."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A briefly trained 10-class DigitsNet checkpoint (network + Momentum state)."""
    from ms_notebook.demo.pretrained import train_pretrained

    path = tmp_path_factory.mktemp("studio") / "pretrained.ckpt"
    train_pretrained(path, {"epochs": 1})
    return str(path)


def _studio(pretrained: str, **kwargs):
    from ms_notebook.demo import DigitsNet, datasets
    from ms_notebook.widgets.studio import Studio

    train, evaluate = datasets("transfer", batch_size=16, shots=4)
    return Studio(DigitsNet(5, seed=1), pretrained, train, evaluate, epochs=1, **kwargs)


def test_studio_has_browse_transfer_run_tabs_composed_of_the_widgets(pretrained):
    from ms_notebook.widgets.browser import CheckpointBrowser
    from ms_notebook.widgets.transfer_panel import TransferPanel

    studio = _studio(pretrained)
    assert [studio.get_title(i) for i in range(3)] == ["Browse", "Transfer", "Run"]
    assert isinstance(studio.browser, CheckpointBrowser)
    assert isinstance(studio.transfer, TransferPanel)
    assert studio.browser.report.counts["shape_mismatch"] == 2  # head.weight and head.bias: 10 vs 5 classes
    assert studio.runner is None and studio.dashboard is None
    assert "No plan applied yet" in studio.run_status.value
    studio.select_tab("Run")
    assert studio.selected_index == 2


def test_apply_builds_runner_over_trainable_parameters_and_a_dashboard(pretrained):
    from ms_notebook.widgets.dashboard import Dashboard

    studio = _studio(pretrained)
    studio.transfer.preset("freeze_backbone")
    studio.transfer.apply_button.click()
    assert isinstance(studio.dashboard, Dashboard)
    assert studio.run_box.children[-1] is studio.dashboard
    opt_params = {p.name for p in studio.runner.optimizer.parameters}
    assert opt_params == {"head.weight", "head.bias"}
    assert studio.curves.history_obj.label == "run 1: frozen backbone"
    assert "run 1: frozen backbone" in studio.run_status.value


@pytest.mark.slow
def test_second_apply_starts_from_the_initial_head_and_keeps_the_first_run_as_overlay(pretrained):
    studio = _studio(pretrained)
    initial_head = studio.net.head.weight.asnumpy().copy()
    studio.transfer.preset("freeze_backbone")
    studio.transfer.apply()
    backbone_before = studio.net.block1.conv.weight.asnumpy().copy()
    studio.runner.fit(1)
    assert not np.array_equal(studio.net.head.weight.asnumpy(), initial_head)
    assert np.array_equal(studio.net.block1.conv.weight.asnumpy(), backbone_before)
    assert studio.net.block1.bn.use_batch_statistics is False

    studio.transfer.preset("unfreeze_all")
    studio.transfer.apply()
    assert np.array_equal(studio.net.head.weight.asnumpy(), initial_head)
    assert studio.net.block1.bn.use_batch_statistics is None  # as built: no longer frozen
    assert studio.net.block1.conv.weight.requires_grad and studio.net.block2.bn.gamma.requires_grad
    assert [h.label for h in studio.curves.overlays] == ["run 1: frozen backbone"]
    assert studio.curves.history_obj.label == "run 2: all unfrozen"
    studio.runner.fit(1)
    assert not np.array_equal(studio.net.block1.conv.weight.asnumpy(), backbone_before)


def test_without_reset_a_second_apply_keeps_the_trained_head(pretrained):
    studio = _studio(pretrained)
    studio.transfer.apply()
    studio.net.head.bias.set_data(studio.net.head.bias + 1.0)
    changed = studio.net.head.bias.asnumpy().copy()
    studio.reset_before_apply.value = False
    studio.transfer.apply()
    assert np.array_equal(studio.net.head.bias.asnumpy(), changed)
    studio.reset_before_apply.value = True
    studio.transfer.apply()
    assert np.array_equal(studio.net.head.bias.asnumpy(), np.zeros(5, np.float32))
