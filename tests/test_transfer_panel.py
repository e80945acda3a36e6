"""TransferPanel widget model: ticks, presets, summary, Apply and the code pane, driven by view intents."""

from __future__ import annotations

import html
import os
import re

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPanel, open_checkpoint
from tests.transfer_support import SmallNet, save_pretrained, values


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("panel") / "pretrained.ckpt")
    save_pretrained(path, "momentum")
    return path


def _row(panel, row_id):
    return next(r for r in panel.tree.rows if r["id"] == row_id)


def _tick(panel, column, row_id):
    panel.tree.handle_intent({"type": "check", "column": column, "id": row_id})


def test_rows_show_status_and_default_checks(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    panel.tree.handle_intent({"type": "expand", "id": "block1.bn", "expanded": True})
    assert _row(panel, "block1")["checks"] == {"reload": True, "freeze": False}
    assert _row(panel, "block1")["values"]["status"] == "match"
    head = _row(panel, "head.weight")
    assert head["status"] == "shape_mismatch" and head["values"]["status"] == "shape mismatch"
    assert head["values"]["ckpt_shape"] == "10×16" and head["checks"]["reload"] is False
    assert _row(panel, "head")["status"] == "shape_mismatch"  # a block shows its worst child
    assert "12 of 14 tensors reloaded" in panel.summary.value and "0.0% frozen" in panel.summary.value


def test_ticking_freeze_on_a_block_freezes_its_subtree_and_updates_the_summary(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    _tick(panel, "freeze", "block2")
    assert set(panel.plan.frozen) == {"block2.conv.weight", "block2.bn.gamma", "block2.bn.beta"}
    assert _row(panel, "block2")["checks"]["freeze"] is True
    assert panel.plan.frozen_batchnorm() == ["block2.bn"]
    frozen = 288 + 8 + 8
    assert f"{100 * frozen / 2497:.1f}% frozen" in panel.summary.value
    _tick(panel, "freeze", "block2")
    assert panel.plan.frozen == []


def test_unticking_reload_keeps_initial_values_and_the_row_becomes_new(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    panel.tree.handle_intent({"type": "expand", "id": "block3.dense", "expanded": True})
    _tick(panel, "reload", "block3.dense.bias")
    assert "block3.dense.bias" not in panel.plan.reloaded
    assert _row(panel, "block3.dense.bias")["status"] == "new"
    assert _row(panel, "block3.dense")["checks"]["reload"] == "mixed"


def test_reload_cannot_be_ticked_on_a_reshaped_head(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    _tick(panel, "reload", "head")
    assert not any(n.startswith("head") for n in panel.plan.reloaded)
    assert _row(panel, "head")["checks"]["reload"] is False


def test_presets_drive_the_plan(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    panel.presets["freeze_backbone"].click()
    assert set(panel.plan.trainable) == {"head.weight", "head.bias"}
    assert _row(panel, "block1")["checks"]["freeze"] is True
    panel.presets["train_last_2"].click()
    assert {n.split(".")[0] for n in panel.plan.trainable} == {"block3", "head"}
    panel.presets["unfreeze_all"].click()
    assert panel.plan.frozen == []


def test_apply_button_loads_the_network_and_shows_the_report(pretrained):
    net = SmallNet(5)
    panel = TransferPanel(net, pretrained, optimizer=lambda p: nn.Momentum(p, 0.05, 0.9))
    _tick(panel, "freeze", "block1")
    panel.apply_button.click()
    assert panel.report is not None and panel.optimizer is panel.report.optimizer
    assert "shape mismatch: checkpoint (10, 16) vs network (5, 16)" in panel.report_view.value
    np.testing.assert_array_equal(
        values(net)["block2.conv.weight"], open_checkpoint(pretrained)["block2.conv.weight"]
    )
    assert net.block1.conv.weight.requires_grad is False and net.block2.conv.weight.requires_grad is True
    assert net.block1.bn.use_batch_statistics is False
    assert {p.name for p in panel.optimizer.parameters} == {p.name for p in net.trainable_params()}


def test_code_pane_shows_to_code_and_follows_the_plan(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained, optimizer_code="nn.Adam(params, 1e-3)")
    assert panel.code_pane.layout.display == "none"
    panel.show_code.value = True
    assert panel.code_pane.layout.display == ""
    assert "FROZEN = []" in panel.code
    _tick(panel, "freeze", "block1")
    assert "'block1.conv.weight'," in panel.code.split("FROZEN = [")[1].split("]")[0]
    assert "optimizer = nn.Adam(params, 1e-3)" in panel.code
    assert panel.code == panel.plan.to_code(optimizer="nn.Adam(params, 1e-3)")


def test_code_pane_writes_mindspore_2s_own_loop_when_that_style_is_chosen(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained, optimizer_code="nn.Adam(params, 1e-3)")
    assert panel.code_style.layout.display == "none"  # shown with the code only
    panel.show_code.value = True
    assert panel.code_style.layout.display == "" and "value_and_grad" not in panel.code
    panel.code_style.value = "functional"
    code = panel.code
    assert code == panel.plan.to_code(optimizer="nn.Adam(params, 1e-3)", style="functional")
    assert "grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)" in code
    assert "for data, label in curves.steps(train_dataset.create_tuple_iterator()):" in code
    compile(code, "<functional>", "exec")


def test_code_pane_is_highlighted_and_names_the_demo_checkpoint_not_its_cache_path(tmp_path, monkeypatch):
    from ms_notebook.demo import DigitsNet
    from ms_notebook.demo.pretrained import checkpoint_path, train_pretrained

    monkeypatch.setenv("MS_NOTEBOOK_CACHE", str(tmp_path / "cache"))
    demo_file = checkpoint_path()  # where the tutorials' checkpoint lives for this user
    train_pretrained(demo_file, {"epochs": 1})
    panel = TransferPanel(DigitsNet(5, seed=1), str(demo_file), optimizer_code="nn.Adam(params, 1e-3)")
    code = panel.code_pane.code
    assert panel.code_pane.code_html == ""  # hidden: nothing highlighted to save with the notebook
    panel.show_code.value = True
    assert "ms.load_checkpoint(demo.pretrained_checkpoint())" in code and str(tmp_path) not in code
    assert code.startswith("import mindspore as ms\nfrom mindspore import nn\nfrom ms_notebook import demo")
    assert '<span style="color:var(--jp-mirror-editor-keyword-color' in panel.code_pane.code_html
    assert html.unescape(re.sub(r"<[^>]+>", "", panel.code_pane.code_html)) == code  # the same text
    namespace = {"net": DigitsNet(5, seed=1)}
    exec(compile(code, "<code pane>", "exec"), namespace)  # it runs as shown
    assert type(namespace["optimizer"]).__name__ == "Adam"


def test_after_apply_the_static_copy_shows_the_ticks_and_the_report(pretrained):
    panel = TransferPanel(SmallNet(5), pretrained)
    panel.preset("freeze_backbone")
    before = panel.static_bundle()["text/html"]
    assert "TransferReport" not in before
    assert before.count('class="ms-static-row"') == len(panel.tree.rows)
    panel.apply()
    after = panel.static_bundle()["text/html"]
    assert "Applied to the network." in after
    assert "shape mismatch: checkpoint (10, 16) vs network (5, 16)" in after
    block1 = re.search(r'<tr class="ms-static-row" data-id="block1">(.*?)</tr>', after).group(1)
    assert block1.count("✓") == 2  # reloaded and frozen
