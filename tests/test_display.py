"""Display is registered from the top floor: the widgets layer tells IPython how a Checkpoint, a CheckpointSet
and a DistributedRun are shown, and no module of the checkpoint index or the runs layer imports the widgets
or the transfer layer, not even inside a function."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from tests.ckpt_wire import write_ckpt

PACKAGE = Path(__file__).resolve().parent.parent / "ms_notebook"
STILL_REACHING_UP: dict[str, set[str]] = {}  # nothing: runs/ gets its view and plans through runs/hooks.py


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (relative imports made absolute)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_neither_the_index_nor_the_runs_layer_imports_widgets_or_transfer():
    reaching = {}
    for layer in ("checkpoint", "runs"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            key = path.relative_to(PACKAGE).as_posix()
            allowed = tuple(STILL_REACHING_UP.get(key, ())) or ("\0",)
            up = {m for m in _imports(path) if m.startswith(("ms_notebook.widgets", "ms_notebook.transfer"))
                  and not m.startswith(allowed)}
            if up:
                reaching[key] = sorted(up)
    assert reaching == {}


def test_the_widgets_layer_registers_how_checkpoints_sets_and_runs_are_shown(tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from ms_notebook.checkpoint import open_checkpoint
    from ms_notebook.runs.launch import DistributedRun
    from ms_notebook.widgets.display import checkpoint_bundle, register, show_distributed_run
    from tests.test_checkpoint_sets_shards import _values, write_shards

    shell = InteractiveShell.instance()
    try:
        assert register(shell)
        formatters = shell.display_formatter
        one = [("w", [2], "Float32", np.ones(2, "f4").tobytes())]
        ck = open_checkpoint(write_ckpt(tmp_path / "a.ckpt", one))
        shards = open_checkpoint(write_shards(tmp_path / "set", _values()))
        assert formatters.mimebundle_formatter.lookup(ck) is checkpoint_bundle
        assert formatters.mimebundle_formatter.lookup(shards) is checkpoint_bundle  # a subclass: by MRO
        assert formatters.ipython_display_formatter.lookup_by_type(DistributedRun) is show_distributed_run
        data, _ = formatters.format(ck)  # no kernel here: the text summary, as a terminal shows it
        assert data["text/plain"] == repr(ck)
        assert not hasattr(ck, "_repr_mimebundle_") and not hasattr(DistributedRun, "_ipython_display_")
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.slow
def test_a_checkpoint_as_a_cells_last_expression_shows_the_browser_in_a_kernel(tmp_path):
    path = write_ckpt(tmp_path / "k.ckpt", [("layer.w", [3], "Float32", np.ones(3, "f4").tobytes())])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import ms_notebook as msn\nmsn.open_checkpoint({str(path)!r})")]
    os.environ.setdefault("GLOG_v", "3")
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, kernel_name="python3", timeout=120, resources=resources).execute()
    (result,) = [o for o in nb.cells[0].outputs if o.output_type == "execute_result"]
    assert "application/vnd.jupyter.widget-view+json" in result.data
    assert result.data["text/plain"].startswith("<Checkpoint ")
