"""A lesson survives save: JupyterLab saves widget state with the notebook (the setting this package ships),
a notebook reopened after its kernel is gone draws its widgets again, and a notebook from someone else
(untrusted: executed elsewhere) shows every widget's static copy instead of "Error displaying widget"."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests.tutorials import NAMES, NOTEBOOKS

from .conftest import (
    ARTIFACTS,
    cell_output,
    lab_env,
    open_notebook,
    run_all,
    run_cell,
    screenshot,
    wait_for,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETTINGS = "@jupyter-widgets/jupyterlab-manager:plugin"
BROKEN = ("Error displaying widget", "model not found")


def _api(lab, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{lab.url}{path}", method=method,
                                     headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def _shut_down_kernels(page, lab) -> None:
    """The kernel is gone, as after closing the laptop: no running kernel keeps any widget alive."""
    for kernel in _api(lab, "/api/kernels"):
        _api(lab, f"/api/kernels/{kernel['id']}", "DELETE")
    wait_for(lambda: _api(lab, "/api/kernels") == [], 30, "the kernels to stop")
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.wait_for_selector(".jp-LauncherCard", timeout=60_000)


def _outputs_text(page) -> str:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea").evaluate_all(
        "areas => areas.map((a) => a.innerText).join('\\n')")


def test_jupyterlab_saves_widget_state_and_the_reopened_notebook_draws_it(page, lab, demo_checkpoint):
    # the default this package ships (share/jupyter/lab/settings/overrides.d/ms-notebook.json), untouched
    settings = _api(lab, f"/lab/api/settings/{SETTINGS}")
    assert settings["schema"]["properties"]["saveState"]["default"] is True
    assert "saveState" not in settings["settings"]
    write_notebook(lab, "saved.ipynb", [
        "import ms_notebook as msn\nfrom ms_notebook import demo\n"
        "browser = msn.browse(demo.pretrained_checkpoint())\nbrowser.select('head')\nbrowser",
        "print('browser' in dir())",
    ])
    open_notebook(page, lab, "saved.ipynb")
    page.wait_for_timeout(1500)  # JupyterLab re-renders freshly opened cells once
    run_cell(page, 0)
    cell_output(page, 0).locator('.ms-tree-row[data-id="head"]').wait_for(timeout=60_000)
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")

    def saved():
        notebook = json.loads((lab.root / "saved.ipynb").read_text())
        return "widgets" in notebook["metadata"] and notebook

    notebook = wait_for(saved, 30, "the notebook saved with its widget state")
    output = notebook["cells"][0]["outputs"][0]["data"]
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert output["application/vnd.jupyter.widget-view+json"]["model_id"] in state
    assert 'data-id="head"' in "".join(output["text/html"])  # the static copy beside the view

    _shut_down_kernels(page, lab)
    open_notebook(page, lab, "saved.ipynb")  # trusted (JupyterLab signed it when saving); a new kernel
    out = cell_output(page, 0)
    out.locator('.ms-tree-row[data-id="head"]').wait_for(timeout=60_000)  # drawn from the saved state
    assert "ms-selected" in (out.locator('.ms-tree-row[data-id="head"]').get_attribute("class") or "")
    assert not any(text in _outputs_text(page) for text in BROKEN)
    run_cell(page, 1)
    assert "False" in cell_output(page, 1).inner_text()  # the new kernel never made this widget
    screenshot(page, "saved-reopened")


@pytest.mark.parametrize("name", NAMES)
def test_a_tutorial_saved_elsewhere_opens_with_every_widget_readable(name, page, lab, tutorials):
    """Executed and saved by nbclient (untrusted here): each widget shows its static copy."""
    shutil.copy(tutorials.get(name).path, lab.root / f"received-{name}")
    open_notebook(page, lab, f"received-{name}")
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea")
    wait_for(lambda: outputs.count() > 0, 30, "the outputs")
    page.wait_for_timeout(1500)
    text = _outputs_text(page)
    assert not any(broken in text for broken in BROKEN), text[:2000]
    static = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .ms-static")
    figures = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea img")
    if name == "02_transfer_learning.ipynb":
        assert figures.count() >= 3  # the digits and the two runs' final curves
    elif name == "04_distributed.ipynb":  # the job's copy: how it ended, its exit codes and rank 0's curves
        assert static.count() >= 1
        copy = static.first
        assert "stopped" in copy.inner_text() and "exit codes" in copy.inner_text()
        assert copy.locator("img").first.evaluate("img => img.complete && img.naturalWidth > 500")
    elif name == "05_your_own_loop.ipynb":  # the loop's final figure, the Dashboard's and the Studio's copies
        assert figures.count() >= 1 and static.count() >= 1
        studio = static.filter(has_text="Run tab (selected)")  # the Studio's copy, its Run tab last shown

        cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

        def studio_drawn() -> bool:  # JupyterLab draws a long notebook's cells as they scroll into view
            for index in range(cells.count()):
                cells.nth(index).scroll_into_view_if_needed()
                if studio.count():
                    studio.first.scroll_into_view_if_needed()
                    return True
            return False

        wait_for(studio_drawn, 30, "the Studio's copy")
        copy = studio.first.text_content() or ""  # laid out or not (a long notebook draws lazily)
        assert "Browse tab" in copy and "Transfer tab" in copy
    else:
        assert static.count() >= 1
        rows = static.first.locator("tr.ms-static-row")
        assert rows.count() >= 4 and "block1" in rows.first.inner_text()
    if name == "03_classroom_studio.ipynb":
        copy = static.first
        assert "Run tab (selected)" in copy.inner_text()
        curves = copy.locator("img.ms-static-figure[alt='training curves']")
        assert curves.evaluate("img => img.complete && img.naturalWidth > 1000")
    screenshot(page, f"received-{name}")


def test_the_classroom_notebook_trusted_and_reopened_shows_the_studio_where_it_was_left(page, lab, tutorials):
    name = "03_classroom_studio.ipynb"
    target = lab.root / f"trusted-{name}"
    shutil.copy(tutorials.get(name).path, target)
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(target)], env=lab_env(lab), check=True,
                   capture_output=True, timeout=60)
    open_notebook(page, lab, target.name)
    studio = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .ms-studio")
    studio.wait_for(timeout=60_000)  # the widget itself, from the saved state
    tabs = [t.strip() for t in studio.locator(".lm-TabBar-tab").all_inner_texts()]
    assert tabs == ["Browse", "Transfer", "Run"]
    current = studio.locator(".lm-TabBar-tab.lm-mod-current").inner_text().strip()
    assert current == "Run"  # the teacher's corner left it on the Run tab
    line = studio.locator(".ms-live-chart path.ms-series-loss")
    wait_for(lambda: line.count() >= 2, 30, "both runs' loss lines")  # the chart's saved numbers
    assert "run 2: all unfrozen" in studio.inner_text()
    assert not any(text in _outputs_text(page) for text in BROKEN)
    # its kernel never made these widgets: one "disconnected" sign per widget (not one per sub-widget),
    # one line saying how to use it again, and controls that look and are disabled
    page.wait_for_timeout(2000)
    shown = page.evaluate(_DISCONNECTED_JS)
    assert shown["widgets"] >= 1 and shown["signs"] <= shown["widgets"], shown
    assert shown["views"] > 20  # the Studio's many sub-views are all disconnected, yet show no sign
    assert "Run the cell to use it" in studio.evaluate("el => getComputedStyle(el, '::after').content")
    fine_tune = studio.get_by_role("button", name="Fine-tune")
    assert fine_tune.evaluate("b => getComputedStyle(b).pointerEvents") == "none"
    assert float(fine_tune.evaluate("b => getComputedStyle(b).opacity")) < 1
    # reopening is not an edit: the restored widget state leaves the notebook unmodified
    page.wait_for_timeout(3000)
    assert page.evaluate("window.jupyterapp.shell.currentWidget.context.model.dirty") is False
    screenshot(page, "trusted-reopened-studio")


# ipywidgets marks each view whose kernel is gone (.jupyter-widgets-disconnected) with a red sign (::before):
# how many views are marked, how many signs show, how many of our widgets there are
_DISCONNECTED_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const views = [...panel.querySelectorAll('.jupyter-widgets-disconnected')];
  const signs = views.filter((el) => {
    const before = getComputedStyle(el, '::before');
    return before.display !== 'none' && before.content !== 'none' && before.content !== 'normal';
  });
  return {views: views.length, signs: signs.length, widgets: panel.querySelectorAll('.ms-widget').length};
}
"""


def test_the_classroom_notebook_run_and_saved_in_jupyterlab_stays_small(page, lab, demo_checkpoint):
    """Run All of notebook 03, saved by JupyterLab with its widget state: figures are palette PNGs (a third of
    RGB) and a hidden code pane holds no highlighted copy, so the lesson is ~390 KB, not the ~1 MB it was (the
    issue's target is 300 KB: not reached yet; anywidget stores each view's ES module and CSS per model,
    ~55 KB, and the run figure sits in both the Studio's image/png and its static HTML)."""
    shutil.copy(NOTEBOOKS / "03_classroom_studio.ipynb", lab.root / "lesson-size.ipynb")
    open_notebook(page, lab, "lesson-size.ipynb")
    page.wait_for_timeout(1500)
    run_all(page)
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    path = lab.root / "lesson-size.ipynb"
    wait_for(lambda: "widgets" in json.loads(path.read_text())["metadata"], 30, "the notebook saved")
    size = path.stat().st_size
    (ARTIFACTS / "lesson-size.txt").write_text(f"{size}\n")
    assert size < 450_000, size
