"""The transfer panel in a real JupyterLab: tick Freeze on a block (or press a preset), press Apply, see the
report and the code, and find the applied network in the next cell."""

from __future__ import annotations

import inspect

import pytest

from tests import transfer_support
from tests.transfer_support import save_pretrained

from .conftest import cell_output, open_notebook, output_text, run_cell, screenshot, write_notebook

pytestmark = pytest.mark.browser


def _open_panel(page, lab, name: str):
    ckpt = name.replace(".ipynb", ".ckpt")  # save_checkpoint writes read-only files: one per test
    save_pretrained(str(lab.root / ckpt), "momentum")
    (lab.root / "transfer_support.py").write_text(inspect.getsource(transfer_support))
    write_notebook(
        lab,
        name,
        [
            "import os\nos.environ['GLOG_v'] = '3'\n"
            "from mindspore import nn\nfrom transfer_support import SmallNet",
            "import ms_notebook\n"
            f"panel = ms_notebook.TransferPanel(SmallNet(5), {ckpt!r},\n"
            "    optimizer=lambda p: nn.Momentum(p, 0.05, 0.9),\n"
            "    optimizer_code='nn.Momentum(params, 0.05, 0.9)')\n"
            "panel",
            "print('frozen:', panel.report.frozen)\n"
            "print('requires_grad:', panel.net.block1.conv.weight.requires_grad)\n"
            "print('optimizer:', type(panel.optimizer).__name__,\n"
            "      [p.name for p in panel.optimizer.parameters])",
        ],
    )
    open_notebook(page, lab, name)
    page.wait_for_timeout(1000)
    run_cell(page, 0)
    run_cell(page, 1)
    out = cell_output(page, 1)
    out.locator('.ms-tree-row[data-id="block1"]').wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # let the output area finish its layout before clicking in it
    head = out.locator('.ms-tree-row[data-id="head"]')
    assert "ms-status-shape_mismatch" in (head.get_attribute("class") or "")
    assert "0.0% frozen" in out.locator(".ms-transfer-summary").inner_text()
    return out


def _click_until(page, target, element, condition: str, tries: int = 3) -> None:
    """Click ``target`` until ``condition`` (JS over ``element``) holds: a click landing while the output
    area still lays out can be lost; the condition is checked before every retry so nothing toggles twice."""
    for _ in range(tries):
        target.click()
        try:
            page.wait_for_function(condition, arg=element.element_handle(), timeout=8_000)
            return
        except Exception:
            if page.evaluate(f"({condition})", element.element_handle()):
                return
    raise AssertionError(f"{condition} never held after {tries} clicks")


def _apply_and_check(page, out, shot: str) -> None:
    out.get_by_role("button", name="Apply").click()
    report = out.locator(".ms-transfer-report")
    report.wait_for(timeout=30_000)
    text = report.inner_text()
    assert "shape mismatch: checkpoint (10, 16) vs network (5, 16)" in text
    assert "12 loaded, 2 skipped" in text
    screenshot(page, f"{shot}-applied")

    out.get_by_role("button", name="Show code").click()
    code = out.locator("pre.ms-code")
    code.wait_for(timeout=15_000)
    code_text = code.inner_text()
    assert "ms.load_param_into_net(net, weights, strict_load=True)" in code_text
    assert "'block1.conv.weight'" in code_text.split("FROZEN = [")[1].split("]")[0]
    assert "optimizer = nn.Momentum(params, 0.05, 0.9)" in code_text
    copy = out.locator(".ms-code-copy")
    copy.click()
    page.wait_for_function("el => el.textContent !== 'Copy'", arg=copy.element_handle(), timeout=10_000)
    code.scroll_into_view_if_needed()
    screenshot(page, f"{shot}-code")

    run_cell(page, 2)
    printed = output_text(page, 2, "requires_grad: False")
    assert "'block1.conv.weight'" in printed and "optimizer: Momentum" in printed


def test_tick_freeze_on_a_block_apply_and_see_report_and_code(page, lab):
    out = _open_panel(page, lab, "transfer-tick.ipynb")
    summary = out.locator(".ms-transfer-summary")
    box = out.locator('.ms-tree-row[data-id="block1"] input[title="Freeze: block1"]')
    _click_until(page, box, summary, "el => !el.innerText.includes('0.0% frozen')")
    assert box.is_checked() and "1.8% frozen" in summary.inner_text()
    screenshot(page, "transfer-tick-frozen")
    _apply_and_check(page, out, "transfer-tick")


def test_preset_apply_shows_report_and_code(page, lab):
    out = _open_panel(page, lab, "transfer-preset.ipynb")
    screenshot(page, "transfer-preset-opened")
    summary = out.locator(".ms-transfer-summary")
    preset = out.get_by_role("button", name="Freeze backbone")
    _click_until(page, preset, summary, "el => el.innerText.includes('96.6%')")
    freeze_block1 = out.locator('.ms-tree-row[data-id="block1"] input[title="Freeze: block1"]')
    page.wait_for_function("el => el.checked", arg=freeze_block1.element_handle(), timeout=15_000)
    screenshot(page, "transfer-preset-frozen")
    _apply_and_check(page, out, "transfer-preset")
