"""The harness itself: JupyterLab starts, a notebook runs, outputs and a standard widget render."""

from __future__ import annotations

import pytest

from .conftest import cell_output, open_notebook, output_text, run_cell, screenshot, write_notebook

pytestmark = pytest.mark.browser


def test_notebook_cell_runs_and_widget_renders(page, lab):
    write_notebook(
        lab,
        "harness.ipynb",
        [
            "print('hello from the kernel', 6 * 7)",
            "import ipywidgets\nipywidgets.IntSlider(value=7, description='seven')",
        ],
    )
    open_notebook(page, lab, "harness.ipynb")
    run_cell(page, 0)
    output_text(page, 0, "hello from the kernel 42")
    run_cell(page, 1)
    slider = cell_output(page, 1).locator(".widget-slider")
    slider.wait_for(timeout=30_000)
    output_text(page, 1, "seven")
    screenshot(page, "harness")
