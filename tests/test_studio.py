"""The Studio widget model: tabs, Apply builds a Runner over the plan's optimizer, runs overlay, resets."""

from __future__ import annotations

import numpy as np
import pytest


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
    assert (studio.runner.run_dir / "last.ckpt").is_file()
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
    first_folder = studio.runner.run_dir
    studio.runner.fit(1)
    assert not np.array_equal(studio.net.block1.conv.weight.asnumpy(), backbone_before)
    # each run saves last.ckpt / best.ckpt by default, in its own run folder, and the Run tab says where
    folder = studio.runner.run_dir
    assert folder is not None and folder.name.endswith("run-2-all-unfrozen")
    assert (folder / "last.ckpt").is_file() and (folder / "best.ckpt").is_file()
    assert first_folder == folder and folder.name in studio.dashboard.run_dir_note.value


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


def test_workers_field_swaps_the_in_process_dashboard_for_the_launcher(pretrained):
    from ms_notebook.widgets.distributed_run import LaunchPanel

    studio = _studio(pretrained)
    assert studio.workers.value == 1 and studio.run_box.children[0] is studio.workers
    studio.transfer.apply()
    assert studio.run_box.children[-1] is studio.dashboard
    studio.workers.value = 3
    assert studio.run_box.children == (studio.workers, studio.launcher)
    assert isinstance(studio.launcher, LaunchPanel)
    assert studio.launcher.launch_button.description == "Launch on 3 workers"
    from ms_notebook.widgets.studio import DEFAULT_OPTIMIZER_CODE

    assert studio.launcher.script_options["optimizer"] == DEFAULT_OPTIMIZER_CODE  # the in-process one
    studio.workers.value = 1
    assert studio.run_box.children[-1] is studio.dashboard


def test_launch_panel_shows_why_a_plan_cannot_become_a_script(pretrained, tmp_path):
    from mindspore import nn

    from ms_notebook import TransferPlan
    from ms_notebook.widgets.distributed_run import LaunchPanel

    panel = LaunchPanel(TransferPlan(nn.SequentialCell(nn.Flatten(), nn.Dense(64, 5)), pretrained),
                        run_root=str(tmp_path))
    assert panel.launch() is None and panel.run is None
    assert "ValueError" in panel.message.value and "network=" in panel.message.value
    assert not list(tmp_path.rglob("job.json"))  # nothing was launched


def test_epochs_and_learning_rate_set_in_the_run_tab_survive_the_next_apply(pretrained):
    studio = _studio(pretrained)
    studio.transfer.apply()
    studio.dashboard.epochs.value = 7
    studio.dashboard.lr.value = 0.005
    first = studio.dashboard
    studio.transfer.preset("unfreeze_all")
    studio.transfer.apply()
    assert studio.dashboard is not first
    assert (studio.dashboard.epochs.value, studio.dashboard.lr.value) == (7, 0.005)


@pytest.mark.slow
def test_the_static_copy_holds_every_tab_and_after_a_run_its_curves(pretrained):
    studio = _studio(pretrained)
    copy = studio.static_bundle()["text/html"]
    for tab in ("Browse tab (selected)", "Transfer tab", "Run tab", "No plan applied yet"):
        assert tab in copy
    assert 'data-id="head"' in copy  # the browser's rows, and the transfer tree's
    assert copy.count('class="ms-static-tree"') == 2
    studio.transfer.preset("freeze_backbone")
    studio.transfer.apply()
    studio.runner.fit(1)
    studio.select_tab("Run")
    bundle = studio.static_bundle()
    assert "Run tab (selected)" in bundle["text/html"] and "run 1: frozen backbone" in bundle["text/html"]
    assert "TransferReport" in bundle["text/html"]  # what Apply reported
    assert 'class="ms-static-figure"' in bundle["text/html"] and bundle["image/png"]
