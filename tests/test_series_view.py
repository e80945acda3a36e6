"""The browser given a series ("Over time", "Δ first") and its layer-diagnostics columns, on real files."""

from __future__ import annotations

import base64
import html
import re
import struct

import numpy as np
import pytest

from ms_notebook import browse, open_checkpoint, open_series
from ms_notebook.widgets.browser import CheckpointBrowser
from tests.series_support import train_series
from tests.set_support import save


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("view") / "run"
    train_series(folder, epochs=1, save_steps=5)
    return folder


def _png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def test_a_series_opens_its_last_checkpoint_with_change_since_the_first(run_folder):
    s = open_series(run_folder)
    browser = browse(s)
    assert browser.checkpoint.path == s.paths[-1]
    assert "Δ first" in [c["label"] for c in browser.tree.columns]
    browser.select("head.weight")
    row = next(r for r in browser.tree.rows if r["id"] == "head.weight")
    want = s.change("head.weight").change_first.iloc[-1]
    assert row["values"]["change_first"] == f"{want:.3g}"


def test_over_time_pictures_fit_1024_by_700_and_follow_the_selection(run_folder):
    s = open_series(run_folder)
    browser = CheckpointBrowser(s)
    view = browser.over_time
    assert view is not None and view.png and view.kind.value == "Change per block"
    w, h = _png_size(view.png)
    assert (w / 2, h / 2) == (1024, 700)  # drawn at 2x, shown 1024 CSS pixels wide
    view.kind.value = "Selected tensor's histogram"
    assert not view.png and "select a tensor" in view.caption.value
    browser.select("block3.dense.weight")
    first = view.png
    assert first and view.image.value == first
    browser.select("head.weight")
    assert view.png != first  # another tensor, another picture
    static = browser.static_html()
    assert "Over time" in static
    img = re.search(
        r'<img class="ms-static-figure" alt="([^"]+)" width="(\d+)"[^>]*src="data:image/png;base64,([^"]+)"',
        static,
    )
    assert img and html.unescape(img.group(1)) == "Selected tensor's histogram" and int(img.group(2)) <= 1024
    assert base64.b64decode(img.group(3)) == view.png


def test_diagnostics_columns_mark_unhealthy_layers(tmp_path):
    rng = np.random.default_rng(2)  # a draw whose Gaussian alpha is 7.3 (random draws range 4.6–19: README)
    values = {
        "random.weight": rng.standard_normal((800, 400)).astype(np.float32),  # alpha > 6: random-like
        "heavy.weight": rng.standard_t(2.5, (800, 400)).astype(np.float32),
        "broken.weight": np.full((64, 32), np.nan, np.float32),
        "small.weight": rng.standard_normal((10, 8)).astype(np.float32),  # too few eigenvalues for alpha
    }
    path = save(tmp_path / "layers.ckpt", values)
    browser = browse(path)
    df = browser.show_diagnostics()
    assert [c["label"] for c in browser.tree.columns][-3:] == ["α", "St. rank", "σ max"]
    browser.expand_all.click()
    rows = {r["id"]: r for r in browser.tree.rows}
    want = open_checkpoint(path).diagnostics().set_index("name")
    assert rows["random.weight"]["status"] == "under_trained"
    assert rows["broken.weight"]["status"] == "not_finite"
    assert "status" not in rows["heavy.weight"] or rows["heavy.weight"]["status"] == "over_trained"
    assert rows["heavy.weight"]["values"]["alpha"] == f"{want.loc['heavy.weight'].alpha:.3g}"
    assert rows["small.weight"]["values"]["alpha"] == "–"
    assert rows["random.weight"]["values"]["stable_rank"] == f"{want.loc['random.weight'].stable_rank:.3g}"
    assert browser.diagnostics_button.disabled and len(df) == 4
    summary = browser.diagnostics_summary.value
    assert "<b>4</b> layers" in summary and "under-trained" in summary and "not finite" in summary
    static = browser.static_html()
    assert "Layer diagnostics" in static and "#f57c00" in static  # the under-trained bar in the copy
