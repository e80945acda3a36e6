"""A run's series in the browser widget in a real JupyterLab: "Over time" picture, diagnostics marks."""

from __future__ import annotations

import pytest

from tests.series_support import train_series

from .conftest import cell_output, open_notebook, run_cell, screenshot, write_notebook

pytestmark = pytest.mark.browser


def test_series_over_time_and_diagnostics_marks(page, lab):
    # one epoch of the demo, saved every 5 steps, a NaN written into block3 at step 20: the last checkpoint
    # (step 22) holds it, so its block3 layer is marked "not finite"
    train_series(lab.root / "run", epochs=1, save_steps=5, nan_at=20)
    write_notebook(
        lab, "series.ipynb", ["import ms_notebook\nms_notebook.browse(ms_notebook.open_series('run'))"]
    )
    open_notebook(page, lab, "series.ipynb")
    page.wait_for_timeout(1500)
    run_cell(page, 0)
    out = cell_output(page, 0)
    out.locator('.ms-tree-row[data-id="block3"]').wait_for(timeout=60_000)
    assert "Δ first" in out.locator(".ms-tree-header").inner_text()

    figure = out.locator(".ms-over-time img")
    figure.wait_for(timeout=30_000)
    assert figure.evaluate("img => img.complete && img.naturalWidth === 2048 && img.naturalHeight === 1400")
    box = figure.bounding_box()
    assert box is not None and box["width"] <= 1024 and box["height"] <= 700
    screenshot(page, "series-1-over-time")

    out.get_by_role("button", name="Layer diagnostics").click()
    header = out.locator(".ms-tree-header")
    page.wait_for_function(
        "el => el.innerText.includes('St. rank')", arg=header.element_handle(), timeout=60_000
    )
    out.get_by_role("button", name="Expand all").click()
    marked = out.locator('.ms-tree-row[data-id="block3.dense.weight"]')
    marked.wait_for(timeout=30_000)
    assert "ms-status-not_finite" in (marked.get_attribute("class") or "")
    bar = marked.evaluate("el => getComputedStyle(el).borderLeftColor")
    assert bar not in ("rgba(0, 0, 0, 0)", "transparent"), bar  # the mark is drawn, not just a class
    assert "not finite" in out.inner_text()
    screenshot(page, "series-2-diagnostics")
