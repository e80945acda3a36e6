"""The Checkpoint Viewer as a person sees it, in Chromium: the shared filter syntax, optimizer/extra toggles,
keyboard navigation, tooltips, error text, sizes written as the Python side writes them, a histogram that
follows its pane, and nothing clipped or tiny at 1024×700 (file browser open), 1440×900 and 2560×1440, light
and dark. Also the notebook toolbar's "Run tagged (N)" button, which shows only where cells are tagged."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.checkpoint.filters import select
from ms_notebook.checkpoint.units import format_bytes, format_int

from .conftest import screenshot, wait_for, write_notebook
from .test_labextension_ui import _use_theme

pytestmark = pytest.mark.browser

LONG = "encoder.layers.0.self_attention_block_with_a_rather_long_descriptive_name.query_key_value_projection"
VIEWPORTS = {"1024x700": (1024, 700), "1440x900": (1440, 900)}


@pytest.fixture(scope="module")
def files(lab):
    """The demo checkpoint (weights, Momentum state, appended values), one with long names and NaN/Inf
    values, and a broken file in a sub-folder, all in the lab's root."""
    import mindspore as ms

    from ms_notebook.demo import pretrained_checkpoint

    demo = lab.root / "demo.ckpt"
    shutil.copyfile(pretrained_checkpoint(), demo)
    rng = np.random.default_rng(0)
    odd = rng.normal(size=(64, 48)).astype(np.float32)
    odd.flat[:5] = np.nan
    odd.flat[5:8] = np.inf
    odd.flat[8] = -np.inf
    long_path = lab.root / "long-names.ckpt"
    ms.save_checkpoint(
        [
            {"name": f"{LONG}.weight", "data": ms.Tensor(odd)},
            {"name": f"{LONG}.bias", "data": ms.Tensor(rng.normal(size=(48,)).astype(np.float32))},
            {"name": "head.weight", "data": ms.Tensor(rng.normal(size=(10, 48)).astype(np.float32))},
        ],
        str(long_path),
    )
    (lab.root / "sub").mkdir(exist_ok=True)
    broken = lab.root / "sub" / "broken.ckpt"
    broken.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return {"demo": demo, "long": long_path, "broken": broken}


@pytest.fixture
def page_at(_browser, lab, request):
    """``page_at(width, height)``: a fresh JupyterLab page with that viewport (file browser open)."""
    contexts = []

    def open_page(width: int, height: int):
        context = _browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{lab.url}/lab?reset&token={lab.token}")
        page.wait_for_selector(".jp-LauncherCard", timeout=60_000)
        if not page.locator(".jp-FileBrowser").is_visible():
            page.keyboard.press("Control+Shift+F")
        page.locator(".jp-FileBrowser").wait_for()
        return page

    yield open_page
    for context in contexts:
        screenshot(context.pages[0], f"{request.node.name}-final")
        context.close()


def _open_viewer(page, lab, name: str):
    page.goto(lab.lab_url(name))
    viewer = page.locator(".ms-CheckpointDocument:not(.lm-mod-hidden) .ms-CheckpointViewer")
    viewer.locator(".ms-TreeRow, .ms-CheckpointViewer-error").first.wait_for(timeout=60_000)
    if not page.locator(".jp-FileBrowser").is_visible():
        page.keyboard.press("Control+Shift+F")
        page.locator(".jp-FileBrowser").wait_for()
    return viewer


def _leaves(viewer) -> list[str]:
    return viewer.locator(".ms-TreeRow.ms-mod-leaf").evaluate_all("rows => rows.map(r => r.dataset.path)")


def _filter(viewer, text: str, expected: list[str]) -> None:
    viewer.locator(".ms-CheckpointViewer-filter").fill(text)
    wait_for(lambda: sorted(_leaves(viewer)) == sorted(expected), 20, f"the rows for {text!r}")


def test_filter_groups_and_units_match_the_notebook_side(page_at, lab, files):
    ck = open_checkpoint(files["demo"])
    weights = [e for e in ck.entries if e.group == "weights"]
    page = page_at(1440, 900)
    viewer = _open_viewer(page, lab, "demo.ckpt")
    # optimizer state and extra values start hidden, their counts beside their toggles
    toggles = viewer.locator(".ms-GroupToggle")
    assert toggles.all_inner_texts() == ["optimizer state (13)", "extra values (3)"]
    assert not any(toggles.locator("input").evaluate_all("boxes => boxes.map(b => b.checked)"))
    top = viewer.locator(".ms-CheckpointViewer-tree > .ms-TreeRow .ms-TreeRow-name").all_inner_texts()
    assert top == ["block1", "block2", "block3", "head"]
    # sizes and counts are written as Python writes them (checkpoint.units)
    header = viewer.locator(".ms-CheckpointViewer-header").inner_text()
    assert f"{format_bytes(ck.file_size)}\non disk" in header
    assert f"{format_int(ck.num_params)}\nparameters" in header
    w_bytes = sum(e.nbytes for e in weights)
    assert f"{len(weights)} · {format_bytes(w_bytes)}\nweights" in header
    for block in ("block1", "block2", "block3", "head"):
        node = ck.tree()[block]
        meta = viewer.locator(f'.ms-TreeRow[data-path="{block}"] .ms-TreeRow-meta').inner_text()
        assert meta == f"{node.tensors} · {format_bytes(node.bytes)}"
    assert "KB" not in viewer.inner_text()

    # the filter is the notebook browser's: the same names for the same text
    _filter(viewer, "*.weight", [e.name for e in select(weights, "*.weight")])
    assert len(_leaves(viewer)) == 4
    _filter(viewer, "/bn/", [e.name for e in select(weights, "/bn/")])
    assert len(_leaves(viewer)) == 8
    note = viewer.locator(".ms-CheckpointViewer-note").inner_text()
    assert "8 matching tensors" in note and "4 in optimizer state" in note
    assert toggles.first.inner_text() == "optimizer state (4 of 13)"
    screenshot(page, "labext-viewer-filter-bn")
    # ticking the toggle shows the optimizer's bn moments, marked as optimizer state
    toggles.first.locator("input").check()
    _filter(viewer, "/bn/", [e.name for e in select(ck.entries, "/bn/") if e.group != "extra"])
    marked = viewer.locator('.ms-TreeRow.ms-mod-leaf[data-group="optimizer"]')
    assert marked.count() == 4
    assert all(p.startswith("moments.") for p in marked.evaluate_all("rs => rs.map(r => r.dataset.path)"))
    assert viewer.locator('.ms-TreeRow[data-path="moments"] .ms-GroupTag').inner_text() == "optimizer"
    assert viewer.locator('.ms-TreeRow[data-path="block1.bn.gamma"] .ms-GroupTag').count() == 0
    toggles.first.locator("input").uncheck()
    _filter(viewer, "/bn/", [e.name for e in select(weights, "/bn/")])
    # a bad regular expression says so and leaves the last good filter's rows, as the notebook browser does
    viewer.locator(".ms-CheckpointViewer-filter").fill("/(/")
    wait_for(lambda: "invalid regular expression" in viewer.locator(".ms-CheckpointViewer-note").inner_text(),
             20, "the bad-regex message")
    assert sorted(_leaves(viewer)) == sorted(e.name for e in select(weights, "/bn/"))
    _filter(viewer, "", [e.name for e in weights])  # every weight, in folders (some closed)


def test_keyboard_reaches_every_row_and_selects_a_tensor(page_at, lab, files):
    page = page_at(1440, 900)
    viewer = _open_viewer(page, lab, "demo.ckpt")
    tree = viewer.locator(".ms-CheckpointViewer-tree")
    assert tree.get_attribute("role") == "tree"
    viewer.locator(".ms-CheckpointViewer-filter").focus()
    page.keyboard.press("ArrowDown")

    def focused() -> str:
        return page.evaluate("document.activeElement.dataset.path || ''")

    assert focused() == "block1"
    row = viewer.locator('.ms-TreeRow[data-path="block1"]')
    assert row.get_attribute("role") == "treeitem" and row.get_attribute("aria-level") == "1"
    assert row.get_attribute("aria-expanded") == "true"
    outline = row.evaluate("r => getComputedStyle(r).outlineStyle")
    assert outline != "none", "the focused row must show its focus"
    page.keyboard.press("End")
    assert focused() == "head.weight"  # siblings in natural order: head.bias, head.weight
    page.keyboard.press("Home")
    assert focused() == "block1"
    page.keyboard.press("ArrowLeft")  # close block1
    assert row.get_attribute("aria-expanded") == "false"
    page.keyboard.press("ArrowDown")
    assert focused() == "block2"
    page.keyboard.press("ArrowRight")  # block2 is open: → moves to its first child
    assert focused() == "block2.bn"
    page.keyboard.press("ArrowRight")  # opens block2.bn
    assert viewer.locator('.ms-TreeRow[data-path="block2.bn"]').get_attribute("aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    assert focused() == "block2.bn.beta"
    page.keyboard.press("Enter")
    viewer.locator(".ms-Detail-title", has_text="block2.bn.beta").wait_for(timeout=30_000)
    selected = viewer.locator('.ms-TreeRow[data-path="block2.bn.beta"]')
    assert selected.get_attribute("aria-selected") == "true"
    assert viewer.locator(".ms-Stats").is_visible()
    page.keyboard.press("ArrowLeft")  # on a tensor: to its folder
    assert focused() == "block2.bn"
    page.keyboard.press("ArrowLeft")  # closes it
    page.keyboard.press("ArrowDown")
    assert focused() == "block2.conv"
    page.keyboard.press(" ")  # Space on a folder opens it
    assert viewer.locator('.ms-TreeRow[data-path="block2.conv"]').get_attribute("aria-expanded") == "true"
    page.keyboard.press("ArrowLeft")  # closes it
    page.keyboard.press("ArrowLeft")  # then goes to the parent
    assert focused() == "block2"
    assert tree.locator('.ms-TreeRow[tabindex="0"]').count() == 1  # the tree is one tab stop
    screenshot(page, "labext-viewer-keyboard")


def test_a_broken_file_says_what_is_wrong_without_codes_or_server_paths(page_at, lab, files):
    page = page_at(1440, 900)
    viewer = _open_viewer(page, lab, "sub/broken.ckpt")
    message = viewer.locator(".ms-CheckpointViewer-error").inner_text()
    assert message.startswith("Cannot open sub/broken.ckpt: not a MindSpore checkpoint"), message
    assert "422" not in message and str(lab.root) not in message and "/tmp" not in message


def _layout_report(viewer) -> dict:
    """What a person would see as clipped or tiny, measured in the page."""
    return viewer.evaluate(
        """v => {
        const panes = ['.ms-CheckpointViewer-header', '.ms-CheckpointViewer-treePane',
                       '.ms-CheckpointViewer-groups', '.ms-CheckpointViewer-tree',
                       '.ms-CheckpointViewer-detail',
                       '.ms-Stats', '.ms-Detail-histogram'];
        const clipped = [];
        for (const sel of panes) {
            for (const el of v.querySelectorAll(sel)) {
                if (el.scrollWidth > el.clientWidth + 1)
                    clipped.push(`${sel}: ${el.scrollWidth} > ${el.clientWidth}`);
            }
        }
        const small = [];
        for (const el of v.querySelectorAll('*')) {
            const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
            if (!own || !el.getClientRects().length) continue;
            let px = parseFloat(getComputedStyle(el).fontSize);
            const svg = el.closest('svg');
            if (svg) px *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
            if (px < 11 - 0.01) small.push(`${el.tagName}.${el.getAttribute('class')}: ${px.toFixed(1)}px`);
        }
        const untitled = [];
        for (const name of v.querySelectorAll('.ms-TreeRow-name')) {
            if (name.scrollWidth > name.clientWidth && !(name.title && name.title.endsWith(name.textContent)))
                untitled.push(name.textContent);
        }
        const truncated = [...v.querySelectorAll('.ms-TreeRow-name')]
            .filter(n => n.scrollWidth > n.clientWidth).map(n => n.title);
        const box = v.querySelector('.ms-Detail-histogram');
        const svg = box && box.querySelector('svg');
        return {clipped, small, untitled, truncated,
                box: box ? box.clientWidth : 0, svg: svg ? svg.getBoundingClientRect().width : 0,
                svgHeight: svg ? svg.getBoundingClientRect().height : 0,
                viewBox: svg ? svg.viewBox.baseVal.width : 0,
                detail: v.querySelector('.ms-CheckpointViewer-detail').clientWidth};
    }"""
    )


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_layout_reflows_without_clipping_in_both_themes(page_at, lab, files, viewport):
    width, height = VIEWPORTS[viewport]
    page = page_at(width, height)
    assert page.locator(".jp-FileBrowser").is_visible()
    viewer = _open_viewer(page, lab, "long-names.ckpt")
    viewer.locator(".ms-CheckpointViewer-filter").fill("")
    # open the long branch down to its weight and select it
    for path in ("encoder.layers", "encoder.layers.0", f"{LONG.rsplit('.', 1)[0]}", LONG):
        node = viewer.locator(f'.ms-TreeRow[data-path="{path}"]')
        if node.get_attribute("aria-expanded") != "true":
            node.click()
    viewer.locator(f'.ms-TreeRow[data-path="{LONG}.weight"]').click()
    viewer.locator(".ms-Detail-histogram svg").wait_for(timeout=30_000)
    stats = dict(zip(viewer.locator(".ms-Stats th").all_inner_texts(),
                     viewer.locator(".ms-Stats td").all_inner_texts(), strict=True))
    total = 64 * 48
    assert stats["NaN"] == f"5 ({5 / total * 100:.1f} %)" and stats["Inf"] == f"4 ({4 / total * 100:.1f} %)"
    assert stats["mean"] != "—" and stats["max"] != "—"
    caption = viewer.locator(".ms-Detail-caption").inner_text()
    assert f"{format_int(total - 9)} finite values" in caption and "5 NaN and 4 Inf not drawn" in caption
    preview = viewer.locator(".ms-Detail-preview").inner_text()
    assert "—" not in preview and "NaN" in preview
    # the histogram has a count axis
    labels = viewer.locator(".ms-Histogram-label").all_text_contents()
    assert "count" in labels and "0" in labels
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        _use_theme(page, theme)
        report = _layout_report(viewer)
        assert not report["clipped"], report["clipped"]
        assert not report["small"], report["small"][:10]
        assert not report["untitled"], report["untitled"]
        assert abs(report["svg"] - report["box"]) <= 1 and abs(report["viewBox"] - report["box"]) <= 1, report
        screenshot(page, f"labext-viewer-{viewport}-{theme.split()[-1].lower()}")
    if viewport == "1024x700":
        assert report["truncated"], "the long segment names should not fit at 1024 px"
        assert all(LONG.split(".")[3] in t or "query_key" in t for t in report["truncated"])
        # the histogram follows its pane: wider window, wider drawing; text stays 11 px at 2560 px
        narrow = report["svg"]
        page.set_viewport_size({"width": 2560, "height": 1440})
        wait_for(lambda: _layout_report(viewer)["svg"] > narrow * 2, 10, "the histogram to widen")
        wide = _layout_report(viewer)
        assert abs(wide["svg"] - wide["box"]) <= 1 and not wide["small"] and not wide["clipped"], wide
        assert wide["svgHeight"] <= 300
        screenshot(page, "labext-viewer-2560-dark")
    _use_theme(page, "JupyterLab Light")


def test_run_tagged_button_shows_only_on_notebooks_with_tagged_cells(page_at, lab):
    write_notebook(lab, "untagged.ipynb", ["x = 1", "y = 2"])
    page = page_at(1440, 900)
    page.goto(lab.lab_url("untagged.ipynb"))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    button = panel.locator(".ms-RunTaggedButton")
    page.wait_for_timeout(1000)
    assert button.count() == 1 and not button.is_visible()
    set_tags = (
        "tags => { const nb = window.jupyterapp.shell.currentWidget.content;"
        " nb.model.cells.get(1).setMetadata('tags', tags); }"
    )
    page.evaluate(set_tags, ["ms-eval"])
    wait_for(button.is_visible, 10, "the button to appear once a cell is tagged")
    assert button.inner_text() == "Run tagged (1)"
    button.click()
    menu = page.locator(".ms-RunTaggedMenu")
    items = [t.strip() for t in menu.locator(".lm-Menu-item").all_inner_texts()]
    assert items == ["Run Cells Tagged ms-eval (1)"]
    page.keyboard.press("Escape")
    page.evaluate(set_tags, [])
    wait_for(lambda: not button.is_visible(), 10, "the button to hide once no cell is tagged")
