"""The tutorial notebooks execute end to end with nbclient, offline on the CPU, without error outputs."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_explore_checkpoint.ipynb", "02_transfer_learning.ipynb", "03_classroom_studio.ipynb"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    """One isolated demo cache for the three notebooks (the first one builds the checkpoint)."""
    return tmp_path_factory.mktemp("demo-cache")


def execute(name: str, workdir: Path) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in ``workdir`` and return it with its outputs, and the seconds it took."""
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    started = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - started


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs first"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_end_to_end_without_errors(name, demo_cache, tmp_path, monkeypatch, artifacts_dir):
    monkeypatch.setenv("GLOG_v", "3")
    monkeypatch.setenv("MS_NOTEBOOK_CACHE", str(demo_cache))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook, seconds = execute(name, tmp_path)
    print(f"{name}: executed in {seconds:.1f} s")
    nbformat.write(notebook, artifacts_dir / f"executed-{name}")  # for a person to look at
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
        or (output.output_type == "stream" and output.name == "stderr" and "Traceback" in output.text)
    ]
    assert errors == []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells)
    images = sum("image/png" in output.get("data", {}) for cell in code_cells for output in cell.outputs)
    assert images >= 1, f"{name} shows no figure"
    assert list(demo_cache.glob("digitsnet-pretrain-*.ckpt")), "the notebook did not use the demo cache"
