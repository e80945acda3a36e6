"""Suite-wide set-up: quiet MindSpore before anything imports it, saved indexes kept out of the user's cache,
and a folder for test artifacts."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# MindSpore reads GLOG_v once, at import: it must be set before any test module imports mindspore.
os.environ.setdefault("GLOG_v", "3")

# Saved .ckpt indexes go to a folder of this run, never ~/.cache: set before any test opens a checkpoint, and
# inherited by every server, kernel and child process the tests start (they copy os.environ).
INDEX_CACHE = tempfile.mkdtemp(prefix="ms-notebook-index-")
os.environ["MS_NOTEBOOK_INDEX_CACHE"] = INDEX_CACHE
atexit.register(shutil.rmtree, INDEX_CACHE, True)
# Run folders that the Studio and Dashboard make by default (./runs beside the notebook) go here instead of
# into the repository, for this process and every kernel it starts.
RUNS = tempfile.mkdtemp(prefix="ms-notebook-runs-")
os.environ["MS_NOTEBOOK_RUNS"] = RUNS
atexit.register(shutil.rmtree, RUNS, True)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and other files for a person to look at (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def tutorials(tmp_path_factory, artifacts_dir):
    """The tutorial notebooks, each executed once per session when first needed (see tests/tutorials.py)."""
    from tests.tutorials import Tutorials

    base = tmp_path_factory.mktemp("tutorials")
    return Tutorials(base / "run", base / "demo-cache", keep=artifacts_dir)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> str:
    """A briefly trained 10-class DigitsNet checkpoint (network + Momentum state), built once per session.

    Tests read it and never write it (runs protect their source checkpoint).
    """
    from ms_notebook.demo.pretrained import train_pretrained

    path = tmp_path_factory.mktemp("pretrained") / "pretrained.ckpt"
    train_pretrained(path, {"epochs": 1})
    return str(path)
