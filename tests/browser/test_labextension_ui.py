"""The ms-notebook JupyterLab extension in Chromium: viewer, new notebook from checkpoint, tagged cells."""

from __future__ import annotations

import json
import re
import time

import nbformat
import numpy as np
import pytest

from .conftest import cell_output, open_notebook, output_text, run_all, run_cell, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_workspace")]


@pytest.fixture(scope="module")
def digits_ckpt(lab):
    """A DigitsNet checkpoint written by MindSpore into the lab's root, and its values."""
    import mindspore as ms

    import ms_notebook

    net = ms_notebook.demo.DigitsNet(num_classes=10)
    path = lab.root / "digits.ckpt"
    if path.exists():
        path.chmod(0o600)
    ms.save_checkpoint(net, str(path))
    return path, {p.name: p.asnumpy() for p in net.get_parameters()}


def _show_file_browser(page, lab) -> None:
    page.goto(lab.lab_url())
    page.wait_for_selector(".jp-DirListing-content", timeout=60_000)


def _file_item(page, name: str):
    item = page.locator(f'.jp-DirListing-item[title^="Name: {name}"]')
    item.wait_for(timeout=30_000)
    return item


def _use_theme(page, theme: str) -> None:
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input")
    palette.wait_for()
    palette.fill(f"Use Theme: {theme}")
    page.locator(".lm-CommandPalette-item", has_text=f"Use Theme: {theme}").first.click()
    expected = "false" if "Dark" in theme else "true"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{expected}'", timeout=30_000)
    time.sleep(0.5)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_double_clicking_a_checkpoint_opens_the_viewer_with_tree_and_statistics(page, lab, digits_ckpt):
    _, values = digits_ckpt
    _show_file_browser(page, lab)
    _file_item(page, "digits.ckpt").dblclick()
    viewer = page.locator(".ms-CheckpointViewer")
    viewer.locator(".ms-TreeRow").first.wait_for(timeout=30_000)
    header = viewer.locator(".ms-CheckpointViewer-header").inner_text()
    assert "digits.ckpt" in header and "ckpt" in header.lower()
    assert f"{len(values)}\ntensors" in header
    assert f"{sum(v.size for v in values.values()):,}\nparameters" in header
    # top-level blocks are listed with their children shown
    top = viewer.locator(".ms-CheckpointViewer-tree > .ms-TreeRow .ms-TreeRow-name").all_inner_texts()
    assert top == ["block1", "block2", "block3", "head"]
    leaf = viewer.locator('.ms-TreeRow[data-path="head.weight"]')
    assert "Float32 [10, " in leaf.inner_text()
    leaf.click()
    viewer.locator(".ms-Stats").wait_for(timeout=30_000)
    stats = dict(
        zip(
            viewer.locator(".ms-Stats th").all_inner_texts(),
            viewer.locator(".ms-Stats td").all_inner_texts(),
            strict=True,
        )
    )
    weight = values["head.weight"].astype(np.float64)
    assert _number(stats["mean"]) == pytest.approx(weight.mean(), rel=2e-3, abs=1e-6)
    assert _number(stats["std"]) == pytest.approx(weight.std(), rel=2e-3)
    assert _number(stats["max"]) == pytest.approx(weight.max(), rel=2e-3)
    assert stats["NaN"] == "0"
    assert viewer.locator(".ms-Histogram-bar").count() == 40
    assert "head.weight" in viewer.locator(".ms-Detail-title").inner_text()
    screenshot(page, "labext-viewer-light")
    # the filter narrows the tree to matching tensors
    viewer.locator(".ms-CheckpointViewer-filter").fill("bias")
    page.wait_for_function(
        "document.querySelector('.ms-CheckpointViewer-note').textContent.includes('matching')"
    )
    leaves = viewer.locator(".ms-TreeRow.ms-mod-leaf").evaluate_all("rows => rows.map(r => r.dataset.path)")
    assert leaves and all(name.endswith("bias") for name in leaves)
    assert sorted(leaves) == sorted(n for n in values if "bias" in n)
    viewer.locator(".ms-CheckpointViewer-filter").fill("")
    _use_theme(page, "JupyterLab Dark")
    try:
        viewer.locator('.ms-TreeRow[data-path="block1.conv"]').click()  # expand
        viewer.locator('.ms-TreeRow[data-path="block1.conv.weight"]').click()
        viewer.locator(".ms-Detail-title", has_text="block1.conv.weight").wait_for()
        bar_fill = viewer.locator(".ms-Histogram-bar").first.evaluate("b => getComputedStyle(b).fill")
        background = viewer.evaluate("v => getComputedStyle(v).backgroundColor")
        assert bar_fill != background
        screenshot(page, "labext-viewer-dark")
    finally:
        _use_theme(page, "JupyterLab Light")


def test_viewer_never_downloads_the_checkpoint(page, lab, digits_ckpt):
    contents_requests: list[str] = []
    page.on("request", lambda r: "/api/contents/digits.ckpt?" in r.url and contents_requests.append(r.url))
    page.goto(lab.lab_url("digits.ckpt"))
    page.locator(".ms-CheckpointViewer .ms-TreeRow").first.wait_for(timeout=60_000)
    assert contents_requests, "the document should still ask the contents API for the file's model"
    assert all("content=0" in url for url in contents_requests), contents_requests


def test_safetensors_open_with_the_checkpoint_viewer(page, lab, digits_ckpt):
    import mindspore as ms

    import ms_notebook

    ms.save_checkpoint(ms_notebook.demo.DigitsNet(num_classes=10), str(lab.root / "digits.safetensors"),
                       format="safetensors")
    _show_file_browser(page, lab)
    _file_item(page, "digits.safetensors").click(button="right")
    page.locator(".lm-Menu-item", has_text="Open With").hover()
    page.locator(".lm-Menu-item", has_text="Checkpoint Viewer").click()
    viewer = page.locator(".ms-CheckpointViewer")
    viewer.locator(".ms-TreeRow").first.wait_for(timeout=30_000)
    header = viewer.locator(".ms-CheckpointViewer-header").inner_text()
    assert "digits.safetensors" in header and "safetensors" in header.lower()
    assert f"{len(digits_ckpt[1])}\ntensors" in header
    screenshot(page, "labext-viewer-safetensors")


def test_new_notebook_from_checkpoint_runs_without_error(page, lab, digits_ckpt):
    _show_file_browser(page, lab)
    _file_item(page, "digits.ckpt").click(button="right")
    page.locator(".lm-Menu-item", has_text="New Notebook from Checkpoint").click()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    idle = ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']"
    page.wait_for_selector(idle, timeout=90_000)
    created = lab.root / "digits.ipynb"
    assert created.exists()
    notebook = nbformat.read(created, as_version=4)
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert sources[0].startswith("import ms_notebook")
    assert 'ms_notebook.open_checkpoint("digits.ckpt")' in sources[0]
    assert sources[0].splitlines()[-1] == "print(ck)"  # not `ck`: the browser is shown once, by the next cell
    assert sources[1] == "ms_notebook.browse(ck)"
    code = "\n".join(sources)
    assert str(lab.root) not in code and not re.search(r"[\"']/", code), "no absolute path in generated code"
    assert "ms_notebook.TransferPlan(net, ck)" in sources[3]
    run_all(page, timeout_ms=240_000)
    errors = page.locator(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type*='error']"
    )
    assert errors.count() == 0, errors.all_inner_texts()
    # the first cell says what it opened; the browser appears once, under browse(ck)
    output_text(page, 1, "<Checkpoint 'digits.ckpt' format=ckpt tensors=14")
    output_text(page, 2, "digits.ckpt · ckpt", "14 tensors")
    browsers = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .ms-checkpoint-browser")
    assert browsers.count() == 1
    output_text(page, 4, "tensors reloaded")
    screenshot(page, "labext-new-notebook")
    # a second request picks a free name instead of overwriting
    _show_file_browser(page, lab)
    _file_item(page, "digits.ckpt").click(button="right")
    page.locator(".lm-Menu-item", has_text="New Notebook from Checkpoint").click()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="digits-1.ipynb").wait_for(timeout=60_000)
    assert (lab.root / "digits-1.ipynb").exists()
    assert nbformat.read(lab.root / "digits.ipynb", as_version=4).cells[1].source == sources[0]


def _tagged_notebook(lab, name: str) -> None:
    cells = [
        nbformat.v4.new_code_cell("ran = []"),
        nbformat.v4.new_code_cell("ran.append('eval'); print('eval ran', ran.count('eval'))"),
        nbformat.v4.new_code_cell("ran.append('finetune'); print('finetune ran')"),
        nbformat.v4.new_code_cell("from ms_notebook.widgets import frontend\nfrontend.probe()"),
        nbformat.v4.new_code_cell("print(frontend.available(), frontend.tags())"),
        nbformat.v4.new_code_cell("frontend.request_run_tagged('ms-eval')"),
    ]
    cells[1].metadata["tags"] = ["ms-eval"]
    cells[2].metadata["tags"] = ["ms-finetune"]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, lab.root / name)


def test_tagged_cell_runs_from_the_toolbar_and_on_the_kernels_request(page, lab):
    _tagged_notebook(lab, "tagged.ipynb")
    open_notebook(page, lab, "tagged.ipynb")
    run_cell(page, 0)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .ms-RunTaggedButton").click()
    menu = page.locator(".ms-RunTaggedMenu")
    assert "Run Cells Tagged ms-eval (1)" in menu.inner_text()
    menu.locator(".lm-Menu-item", has_text="ms-eval").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')][1]"
        ".innerText.includes('eval ran 1')",
        timeout=60_000,
    )
    assert "finetune ran" not in cell_output(page, 2).inner_text()
    run_cell(page, 3)
    run_cell(page, 4)
    assert re.search(r"True \{.*'ms-eval': 1", output_text(page, 4, "True"))
    run_cell(page, 5)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')][1]"
        ".innerText.includes('eval ran 2')",
        timeout=60_000,
    )
    assert "finetune ran" not in cell_output(page, 2).inner_text()
    screenshot(page, "labext-tagged-cells")
    saved = json.loads((lab.root / "tagged.ipynb").read_text())
    assert saved["cells"][1]["metadata"]["tags"] == ["ms-eval"]
