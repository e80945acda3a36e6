"""Checkpoint sets in the JupyterLab Checkpoint Viewer: an index file opens from the file browser (ordinary
.json files still open as JSON), and "Open as Checkpoint" on a rank folder shows the assembled model."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest

from ..set_support import EXTRA, L, write_rank_set
from ..test_checkpoint_sets_shards import _values, write_shards
from .conftest import screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_workspace")]


@pytest.fixture(scope="module")
def sets(lab):
    """A folder of shards with its index, a 4-rank run with its strategy, and a plain JSON file."""
    folder = lab.root / "sets"
    write_shards(folder / "llm", _values())
    w = np.arange(48, dtype=np.float32).reshape(8, 6)
    write_rank_set(folder / "run", {"w": w}, {"w": L([2, 2], [1, -1])}, ranks=4, extra=EXTRA)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    return folder


def _workspace(lab) -> str:
    request = urllib.request.Request(f"{lab.url}/lab/api/workspaces/default?token={lab.token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def _open_folder(page, lab, path: str) -> None:
    page.goto(f"{lab.url}/lab/tree/{path}?token={lab.token}")
    page.wait_for_selector(".jp-DirListing-content", timeout=60_000)


def _item(page, name: str):
    item = page.locator(f'.jp-DirListing-item[title^="Name: {name}"]')
    item.wait_for(timeout=30_000)
    return item


def test_double_clicking_an_index_file_opens_the_whole_set(page, lab, sets):
    _open_folder(page, lab, "sets/llm")
    _item(page, "model.safetensors.index.json").dblclick()
    viewer = page.locator(".ms-CheckpointViewer")
    viewer.locator(".ms-TreeRow").first.wait_for(timeout=60_000)
    header = viewer.locator(".ms-CheckpointViewer-header").inner_text()
    assert "model.safetensors.index.json" in header and "shards" in header
    assert f"{len(_values())}\ntensors" in header and "4\nfiles" in header
    assert "3 shards listed in model.safetensors.index.json" in header
    viewer.locator('.ms-TreeRow[data-path="lm_head.weight"]').click()
    viewer.locator(".ms-Detail-slices").wait_for(timeout=30_000)
    assert "model-00002-of-00003.safetensors" in viewer.locator(".ms-Detail-slices").inner_text()
    screenshot(page, "labext-set-index")
    # a viewer never saves, so JupyterLab makes no copy of what it shows in .ipynb_checkpoints
    assert not list((sets / "llm").glob(".ipynb_checkpoints/*"))


def test_an_ordinary_json_file_still_opens_as_json(page, lab, sets):
    _open_folder(page, lab, "sets")
    _item(page, "config.json").dblclick()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="config.json").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator(".ms-CheckpointViewer").count() == 0


def test_open_as_checkpoint_on_a_rank_folder_shows_the_assembled_model(page, lab, sets):
    _open_folder(page, lab, "sets")
    _item(page, "run").click(button="right")
    page.locator(".lm-Menu-item", has_text="Open as Checkpoint").click()
    viewer = page.locator(".ms-CheckpointViewer")
    viewer.locator(".ms-TreeRow").first.wait_for(timeout=60_000)
    header = viewer.locator(".ms-CheckpointViewer-header").inner_text()
    assert "ranks" in header and "4 ranks (rank_0 … rank_3), .ckpt files, strategy strategy.ckpt" in header
    leaf = viewer.locator('.ms-TreeRow[data-path="w"]')
    assert "Float32 [8, 6]" in leaf.inner_text()  # the full shape, not a rank's slice
    leaf.click()
    viewer.locator(".ms-Detail-slices").wait_for(timeout=30_000)
    slices = viewer.locator(".ms-Detail-slices li").all_inner_texts()
    assert slices == ["[0:4, 0:6] · rank_0, rank_1", "[4:8, 0:6] · rank_2, rank_3"]
    assert "assembled from 2 slices" in viewer.locator(".ms-CheckpointViewer-detail").inner_text()
    screenshot(page, "labext-set-ranks")
    assert not list(sets.glob(".ipynb_checkpoints/run*"))
    # reopening the lab restores the folder's viewer as a folder (once the workspace has saved it)
    wait_for(
        lambda: "ms-checkpoint-viewer:sets/run" in _workspace(lab), 30, "the workspace to hold the viewer"
    )
    page.goto(f"{lab.url}/lab?token={lab.token}")
    page.locator(".ms-CheckpointViewer .ms-TreeRow").first.wait_for(timeout=60_000)
    assert page.locator(".jp-Dialog").count() == 0
    # double-clicking the folder still enters it
    _open_folder(page, lab, "sets")
    _item(page, "run").dblclick()
    _item(page, "rank_0")
