"""The tutorial notebooks, executed at most once per test session and saved as a person would leave them.

nbclient runs each notebook offline on the CPU in its own kernel (with a demo cache of its own, so notebook 01
also builds the demo checkpoint), stores the widget state in the notebook's metadata as JupyterLab does with
the ``saveState`` setting this package ships, and writes the result. Tests that check the run, the saved
file, the HTML export and the kernel-less reopen in JupyterLab all read these files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_explore_checkpoint.ipynb", "02_transfer_learning.ipynb", "03_classroom_studio.ipynb",
         "04_distributed.ipynb", "05_your_own_loop.ipynb"]


@dataclass
class Executed:
    """A tutorial after a run: the saved file (widget state included) and how long it took."""

    name: str
    path: Path
    seconds: float
    built_demo: bool  # the demo cache was empty before this run: the notebook built the checkpoint

    def read(self) -> nbformat.NotebookNode:
        return nbformat.read(self.path, as_version=4)


class Tutorials:
    """Executes a tutorial when first asked for it; later requests get the same saved file."""

    def __init__(self, workdir: Path, demo_cache: Path, keep: Path | None = None) -> None:
        self.workdir, self.demo_cache, self.keep = workdir, demo_cache, keep
        self._done: dict[str, Executed] = {}

    def get(self, name: str) -> Executed:
        if name not in self._done:
            self._done[name] = self._execute(name)
        return self._done[name]

    def _execute(self, name: str) -> Executed:
        from nbclient import NotebookClient

        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        folder = self.workdir / name.removesuffix(".ipynb")
        folder.mkdir(parents=True, exist_ok=True)
        client = NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                                resources={"metadata": {"path": str(folder)}})
        env = {**os.environ, "GLOG_v": "3", "MS_NOTEBOOK_CACHE": str(self.demo_cache),
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        built_demo = not any(self.demo_cache.glob("digitsnet-pretrain-*.ckpt"))
        started = time.perf_counter()
        client.execute(env=env)
        seconds = time.perf_counter() - started
        path = folder / name
        nbformat.write(notebook, path)
        if self.keep is not None:  # for a person to look at
            nbformat.write(notebook, self.keep / f"executed-{name}")
        return Executed(name, path, seconds, built_demo)
