"""Suite-wide set-up: quiet MindSpore before anything imports it, and a folder for test artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# MindSpore reads GLOG_v once, at import: it must be set before any test module imports mindspore.
os.environ.setdefault("GLOG_v", "3")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and other files for a person to look at (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
