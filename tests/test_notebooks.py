"""The tutorial notebooks execute end to end offline on the CPU, and what they leave is readable without a
kernel: in the saved file and in nbconvert's HTML export (widgets as their static copies)."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import pytest
from nbconvert import HTMLExporter

from tests.tutorials import NAMES, NOTEBOOKS

pytestmark = pytest.mark.slow

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# what each tutorial's export must show: rows of its checkpoint browsers, the curves as an image
ROWS = {"01_explore_checkpoint.ipynb": ["block1", "head"], "03_classroom_studio.ipynb": ["block1", "head"]}
CURVES = {"02_transfer_learning.ipynb": 2, "03_classroom_studio.ipynb": 1}  # final figures at least


def outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs first"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_end_to_end_without_errors(name, tutorials):
    executed = tutorials.get(name)
    print(f"{name}: executed in {executed.seconds:.1f} s")
    notebook = executed.read()
    errors = [
        output for output in outputs(notebook)
        if output.output_type == "error"
        or (output.output_type == "stream" and output.name == "stderr" and "Traceback" in output.text)
    ]
    assert errors == []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells)
    images = sum("image/png" in output.get("data", {}) for output in outputs(notebook))
    assert images >= 1, f"{name} shows no figure"
    built = list(tutorials.demo_cache.glob("digitsnet-pretrain-*.ckpt"))
    assert built, "the notebook did not use the demo cache"


def test_the_first_notebook_says_while_the_demo_checkpoint_builds(tutorials):
    executed = tutorials.get(NAMES[0])
    if not executed.built_demo:
        pytest.skip("another tutorial ran first and built the demo checkpoint")
    first = next(cell for cell in executed.read().cells if cell.cell_type == "code")
    said = "".join(output.get("text", "") for output in first.outputs if output.output_type == "stream")
    assert "Building the demo checkpoint (first use only, about 20–30 s on a CPU)" in said
    assert re.search(r"Demo checkpoint ready in \d+ s", said), said


@pytest.mark.parametrize("name", NAMES)
def test_every_widget_output_carries_a_static_copy_beside_its_view(name, tutorials):
    notebook = tutorials.get(name).read()
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    views = [output for output in outputs(notebook) if WIDGET_VIEW in output.get("data", {})]
    for output in views:
        assert output.data[WIDGET_VIEW]["model_id"] in state  # a trusted reopen finds the model
        assert 'class="ms-static"' in output.data["text/html"], sorted(output.data)
    if name != "02_transfer_learning.ipynb":  # 02 shows curves only: a PNG replaces each when its run ends
        assert views, f"{name} shows no widget"


def _export(path, clear_state: bool) -> str:
    """HTML of ``jupyter nbconvert --to html`` (with ``--ClearMetadataPreprocessor.enabled=True``)."""
    args = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--stdout", str(path)]
    if clear_state:
        args.insert(-1, "--ClearMetadataPreprocessor.enabled=True")
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.mark.parametrize("name", NAMES)
def test_html_export_shows_the_curves_and_the_browsers_rows(name, tutorials):
    """Exported without the saved widget state, every widget is its static copy: rows, figures, reports."""
    page = _export(tutorials.get(name).path, clear_state=True)
    assert WIDGET_VIEW not in page and "Error displaying widget" not in page
    assert "CheckpointBrowser(children=" not in page and "Studio(children=" not in page  # no raw reprs
    for row in ROWS.get(name, []):
        assert f'<tr class="ms-static-row" data-id="{row}">' in page
    figures = len(re.findall(r'<img[^>]+src="data:image/png;base64,', page))
    assert figures >= CURVES.get(name, 1)
    if name == "03_classroom_studio.ipynb":
        for tab in ("Browse tab", "Transfer tab", "Run tab (selected)"):
            assert tab in page
        assert "run 2: all unfrozen" in page and 'class="ms-static-figure"' in page


def test_html_export_keeps_the_saved_widget_state_for_the_html_manager(tutorials):
    """How nbconvert treats saved state (see ms_notebook/widgets/static.py): models present in the notebook's
    widget state are drawn by ipywidgets' HTML manager (from a CDN, online), so the state must stay put."""
    executed = tutorials.get("03_classroom_studio.ipynb")
    page, _ = HTMLExporter().from_filename(str(executed.path))
    assert f'<script type="{WIDGET_STATE}">' in page
    assert f'<script type="{WIDGET_VIEW}">' in page  # the Studio, drawn from its saved state online
