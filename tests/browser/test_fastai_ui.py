"""fastai's tools in a real JupyterLab: Find LR draws the finder's curve and Use suggestion fills the learning
rate; Interpret shows the confusion matrix and the top-loss images."""

from __future__ import annotations

import pytest

from .conftest import cell_output, open_notebook, output_text, run_cell, screenshot, wait_for, write_notebook
from .test_dashboard_ui import SETUP

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_find_lr_and_interpret_from_the_dashboard(page, lab):
    write_notebook(lab, "fastai.ipynb", [SETUP, "dash = Dashboard(runner, epochs=1)\ndash"])
    open_notebook(page, lab, "fastai.ipynb")
    run_cell(page, 0, timeout_ms=180_000)
    output_text(page, 0, "runner ready")
    run_cell(page, 1)
    output = cell_output(page, 1).first
    find_lr = output.locator("button", has_text="Find LR")
    find_lr.wait_for(timeout=60_000)
    find_lr.click()
    image = output.locator(".ms-lr-finder img")
    wait_for(lambda: image.count() and image.first.evaluate("img => img.complete && img.naturalWidth > 0"),
             180, "the finder's curve")
    summary = output.locator(".ms-lr-finder-summary").inner_text()
    assert "suggested learning rate" in summary and "restored" in summary
    lr_label = page.locator("label", has_text="learning r")
    lr_input = output.locator(".widget-text", has=lr_label).locator("input")
    before = lr_input.input_value()
    output.locator("button", has_text="Use suggestion").click()
    wait_for(lambda: lr_input.input_value() != before, 30, "the suggested learning rate in the field")
    screenshot(page, "dashboard-find-lr")

    output.locator("button", has_text="Interpret").click()
    confusion = output.locator("table.ms-confusion")
    wait_for(lambda: confusion.count() == 1 and confusion.locator("tbody tr").count() == 10, 180,
             "the confusion matrix")
    top = output.locator(".ms-interpretation-view img")
    wait_for(lambda: top.first.evaluate("img => img.complete && img.naturalWidth > 0"), 60, "top-loss images")
    confusion.scroll_into_view_if_needed()
    screenshot(page, "dashboard-interpret")
