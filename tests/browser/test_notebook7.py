"""Notebook 7 comes with the package (``notebook`` is a dependency): ``jupyter notebook`` serves a notebook in
which the package's widgets draw, with the package's front-end extension loaded, as JupyterLab does."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest

from tests.servers import jupyter_env, jupyter_server

from .conftest import run_cell, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELL = """
import os
os.environ.setdefault("GLOG_v", "3")
import ms_notebook as msn
from ms_notebook import demo
msn.browse(demo.pretrained_checkpoint())
"""


def test_jupyter_notebook_7_draws_the_widgets_with_the_extension_loaded(_browser, tmp_path, demo_checkpoint):
    import notebook

    assert int(notebook.__version__.split(".")[0]) == 7
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "nb7.ipynb")
    env = jupyter_env(tmp_path, GLOG_v="3")
    launcher = [sys.executable, "-m", "notebook"]
    with jupyter_server(launcher, root, env, tmp_path / "server.log") as (url, token):
        context = _browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{url}/notebooks/nb7.ipynb?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            config = json.loads(page.locator("#jupyter-config-data").text_content())
            assert "ms-notebook" in {e["name"] for e in config.get("federated_extensions", [])}
            wait_for(lambda: page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                                          ".jp-KernelStatus-success, [data-status='idle']").count(),
                     90, "the kernel to start")
            run_cell(page, 0, timeout_ms=180_000)
            browser = page.locator(".jp-OutputArea .ms-checkpoint-browser")
            browser.wait_for(timeout=60_000)
            wait_for(lambda: browser.locator(".ms-tree-row", has_text="block1").count(), 60, "the tree rows")
            screenshot(page, "notebook7-browser")
        finally:
            context.close()
