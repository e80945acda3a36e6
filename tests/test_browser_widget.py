"""CheckpointBrowser widget state on real checkpoints: header, details pane, compare colours, toggles."""

from __future__ import annotations

import base64
import re

import mindspore as ms
import numpy as np
import pytest

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.widgets.browser import CheckpointBrowser, browse, checkpoint_mimebundle
from ms_notebook.widgets.tensor_view import heatmap_array
from tests.test_compare import SmallCNN, train_steps


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser") / "trained.ckpt"
    ms.save_checkpoint(train_steps(SmallCNN(), steps=2), str(path), append_dict={"epoch_num": 3})
    return path


def test_header_names_the_file_and_totals_by_group_and_dtype(path):
    ck = open_checkpoint(path)
    browser = browse(path)
    text = browser.header.value
    assert "trained.ckpt" in text and f"{len(ck.entries)} tensors" in text
    assert "by group:" in text and "optimizer" in text and "weights" in text and "Float32" in text


def test_selecting_a_tensor_shows_statistics_histogram_and_values(path):
    ck = open_checkpoint(path)
    browser = CheckpointBrowser(ck)
    browser.tree.handle_intent({"type": "select", "id": "block3.weight"})
    html = browser.details.value
    stats = ck.stats("block3.weight")
    assert "block3.weight" in html and "32×256" in html
    assert f"{stats.mean:.6g}" in html and f"{stats.max:.6g}" in html
    found = re.search(
        r'<img class="ms-hist" alt="histogram" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html
    )
    assert found
    svg = base64.b64decode(found.group(1)).decode()
    summary = ck.describe("block3.weight", 40)  # the same cached summary the Checkpoint Viewer's server uses
    assert svg.count("<rect") == int(np.count_nonzero(summary.counts)) > 10
    assert f">{int(summary.counts.max()):,}<" in svg and ">count<" in svg  # the count axis
    first = float(np.asarray(ck["block3.weight"]).reshape(-1)[0])
    preview = html[html.rindex("<pre"):]  # the values, as NumPy prints them (fixed or e-notation)
    shown = float(re.search(r"-?\d+\.\d*(?:e[+-]\d+)?", preview[preview.index(">") :]).group(0))
    assert np.isclose(shown, first, rtol=1e-3, atol=1e-4), (shown, first)
    assert 'class="ms-bad"' not in html


def test_nan_and_inf_are_flagged_in_red(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    values[0, 1] = np.nan
    values[2, 2] = np.inf
    path = tmp_path / "bad.ckpt"
    ms.save_checkpoint([{"name": "layer.w", "data": ms.Tensor(values)}], str(path))
    browser = CheckpointBrowser(path)
    browser.select("layer.w")
    html = browser.details.value
    assert re.search(r'<tr class="ms-bad"><th>NaN</th><td>1</td></tr>', html)
    assert re.search(r'<tr class="ms-bad"><th>Inf</th><td>1</td></tr>', html)
    assert "<tr><th>mean</th>" in html  # finite figures are not flagged


def test_heat_map_for_a_conv_kernel_tiles_out_by_in_channels(path):
    ck = open_checkpoint(path)
    browser = CheckpointBrowser(ck)
    browser.heatmap.value = True
    browser.select("block2.0.weight")
    assert 'class="ms-heatmap"' in browser.details.value
    picture = heatmap_array(ck["block2.0.weight"])  # 16×8 kernels of 3×3 with 1-pixel gaps
    assert picture.shape == (16 * 4 - 1, 8 * 4 - 1)
    np.testing.assert_array_equal(picture[:3, :3], ck["block2.0.weight"][0, 0])
    browser.select("head.bias")
    assert "only for matrices and conv kernels" in browser.details.value


def test_compare_colours_rows_adds_missing_and_filters_problems(path):
    browser = CheckpointBrowser(path, SmallCNN(5, adapter=True))
    assert browser.report.names("shape_mismatch") == ["head.weight", "head.bias"]
    assert "2</b> shape mismatch" in browser.compare_summary.value
    browser.tree.set_expanded("head")
    browser.tree.set_expanded("adapter")
    rows = {r["id"]: r for r in browser.tree.rows}
    assert rows["head.weight"]["status"] == "shape_mismatch"
    assert rows["head"]["status"] == "contains_problem"
    assert rows["adapter.weight"]["status"] == "missing"  # a network parameter shown as a row
    browser.only_problems.value = True
    leaves = [r["id"] for r in browser.tree.rows if not r["has_children"]]
    assert sorted(leaves) == ["adapter.bias", "adapter.weight", "head.bias", "head.weight"]
    browser.select("head.weight")
    assert "shape mismatch" in browser.details.value and "(10, 32) vs net (5, 32)" in browser.details.value
    browser.select("adapter.weight")
    assert "Missing from the checkpoint" in browser.details.value


def test_optimizer_toggle_and_expand_all(path):
    browser = CheckpointBrowser(path)
    assert "moments" not in [r["id"] for r in browser.tree.rows]
    browser.show_optimizer.value = True
    assert "moments" in [r["id"] for r in browser.tree.rows]
    browser.expand_all.click()
    ck = open_checkpoint(path)
    leaves = [r["id"] for r in browser.tree.rows if not r["has_children"]]
    assert sorted(leaves) == sorted(e.name for e in ck.entries if e.group != "extra")


def test_display_hook_falls_back_to_the_text_summary_outside_a_kernel(path):
    ck = open_checkpoint(path)
    assert checkpoint_mimebundle(ck) == {"text/plain": repr(ck)}


def test_select_brings_the_row_into_view_and_shows_its_details(path):
    """``select(name)`` acts like a click on a row the tree does not show yet: ancestors expanded, its
    group shown, a filter hiding it cleared; the details come from the checkpoint's shared summary."""
    ck = open_checkpoint(path)
    browser = CheckpointBrowser(ck)
    assert "block2.0.weight" not in [r["id"] for r in browser.tree.rows]  # collapsed
    browser.select("block2.0.weight")
    ids = [r["id"] for r in browser.tree.rows]
    assert ids.index("block2") < ids.index("block2.0") < ids.index("block2.0.weight")
    assert browser.tree.selected == "block2.0.weight" and "block2.0.weight" in browser.details.value
    assert ck.is_described("block2.0.weight", 40)  # the Viewer's server would answer from the same cache
    browser.tree.set_filter("head")
    browser.select("moments.block3.bias")  # optimizer state, hidden by default, and filtered out
    assert browser.show_optimizer.value and browser.tree.filter_text == ""
    assert "moments.block3.bias" in [r["id"] for r in browser.tree.rows]
    assert browser.tree.selected == "moments.block3.bias"
