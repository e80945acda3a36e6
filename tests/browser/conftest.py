"""The real-browser harness: JupyterLab served on 127.0.0.1 and Debian's Chromium driven by Playwright.

Fixtures
    lab    (session) a running JupyterLab: ``lab.url``, ``lab.token``, ``lab.root`` (its root, a temp dir)
    page   (function) a fresh Chromium page showing JupyterLab; a final screenshot is saved on teardown

Helpers (test modules do ``from .conftest import write_notebook, open_notebook, run_cell, screenshot``)
    write_notebook(lab, name, cells)   write a notebook of code cells into the lab's root
    open_notebook(page, lab, name)     open it and wait for its kernel to be idle
    run_cell(page, index)              run one cell (Shift+Enter, retried) and wait until it has finished
    run_all(page)                      run every code cell in order
    cell_output(page, index)           the output area of a cell, as a Playwright locator
    output_text(page, index, *texts)   a cell's output text once it shows all ``texts`` (widgets draw late)
    screenshot(page, name)             save ``test-artifacts/<name>.png``
    set_theme(page, light)             JupyterLab Light / Dark, waiting until it applies
    show_file_browser(page, shown)     open or close the left side panel's file browser
    clipped(locator)                   what a person cannot read in it: cut text, overflowing boxes
    broken_words(locator)              words split over two lines inside it ("varian / ce")
    lab_env(lab)                       the lab's environment (its Jupyter folders), e.g. for `jupyter trust`

Chromium comes from Debian (``make test`` installs it); ``playwright install`` is never used.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tests.servers import jupyter_env, jupyter_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SERVER_START_TIMEOUT_S = 120
_PROMPT_NUMBER = re.compile(r"\[\d+\]")


@dataclass
class Lab:
    """A JupyterLab server started for the tests."""

    url: str
    token: str
    root: Path
    log: Path

    def lab_url(self, path: str = "") -> str:
        """URL of ``/lab`` (or ``/lab/tree/<path>``) with the token."""
        tail = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{tail}?token={self.token}"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Start JupyterLab on 127.0.0.1, a free port and a random token, with isolated Jupyter directories."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    env = jupyter_env(base, GLOG_v="3", MPLBACKEND="module://matplotlib_inline.backend_inline")
    # No "news" toast over the page.
    labconfig = base / "config" / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    log = base / "server.log"
    args = ["--ServerApp.disable_check_xsrf=False",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: tests can set cell metadata
    with jupyter_server([sys.executable, "-m", "jupyterlab"], root, env, log, args,
                        SERVER_START_TIMEOUT_S) as (url, token):
        yield Lab(url=url, token=token, root=root, log=log)


@pytest.fixture(scope="session")
def _browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(_browser, lab: Lab, request: pytest.FixtureRequest):
    """A fresh page showing JupyterLab; its console errors are printed and a final screenshot kept."""
    context = _browser.new_context(viewport={"width": 1440, "height": 960})
    page = context.new_page()
    page.set_default_timeout(30_000)
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")  # reset: no document restored from an earlier test
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    page.wait_for_selector(".jp-LauncherCard, .jp-NotebookPanel", timeout=60_000)
    yield page
    try:
        screenshot(page, f"{request.node.name}-final")
    finally:
        if console_errors:
            print(f"browser console errors in {request.node.name}:", *console_errors[:20], sep="\n  ")
        context.close()


@pytest.fixture
def fresh_workspace(page, lab: Lab, request: pytest.FixtureRequest):
    """Leave the lab's workspace as found: restored viewers or notebooks would hide the launcher next time."""
    yield
    screenshot(page, f"{request.node.name}-end")
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.wait_for_selector(".jp-LauncherCard", timeout=60_000)


@pytest.fixture(scope="session")
def demo_checkpoint() -> str:
    """Build the demo checkpoint in this process's cache before a kernel (same environment) needs it."""
    from ms_notebook.demo import pretrained_checkpoint

    return pretrained_checkpoint()


def write_notebook(lab: Lab, name: str, cells: list[str]) -> Path:
    """Write a notebook of code cells (strings) into the lab's root and return its path."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = lab.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def open_notebook(page, lab: Lab, name: str, timeout_ms: int = 90_000) -> None:
    """Open a notebook from the lab's root and wait until its kernel is idle."""
    page.goto(lab.lab_url(name))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    page.wait_for_selector(
        ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_ms
    )
    _wait_until_cells_settle(page)


def _wait_until_cells_settle(page, quiet_s: float = 0.6, timeout_s: float = 15) -> None:
    """JupyterLab re-draws cells for a moment after opening: wait until the cell count stops changing."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = cells.count()
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_s:
            return
        time.sleep(0.1)


def _prompt_text(cell) -> str:
    return cell.locator(".jp-InputArea-prompt").first.inner_text().strip()


def run_cell(page, index: int, timeout_ms: int = 120_000):
    """Run code cell ``index`` of the open notebook; return the cell's locator once it has finished.

    Shift+Enter can be lost while focus settles after a click, so it is retried until the prompt shows ``[*]``
    or a new execution count.
    """
    from playwright.sync_api import Error as PlaywrightError

    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    # An empty prompt is one not rendered yet: reading it as "before" would make any text look like a start.
    cell.locator(".jp-InputArea-prompt").first.filter(has_text="[").wait_for(timeout=30_000)
    before = _prompt_text(cell)
    for _ in range(10):
        try:
            cell.locator(".jp-InputArea-prompt").first.click()
            page.keyboard.press("Escape")
            cell.locator(".jp-InputArea-prompt").first.click()
            page.keyboard.press("Shift+Enter")
        except PlaywrightError:  # the cell was re-drawn under the click ("not attached to the DOM"): retry
            time.sleep(0.5)
            continue
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            now = _prompt_text(cell)
            if now != before or "*" in now:
                break
            time.sleep(0.1)
        else:
            continue
        break
    else:
        raise AssertionError(f"cell {index} did not start running (prompt stays {before!r})")
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        text = _prompt_text(cell)
        if _PROMPT_NUMBER.search(text) and text != before:
            return cell
        time.sleep(0.2)
    raise AssertionError(f"cell {index} did not finish within {timeout_ms} ms")


def _is_code(cell) -> bool:
    """A code cell with source (Shift+Enter on the last cell appends an empty one, which never runs)."""
    if "jp-CodeCell" not in (cell.get_attribute("class") or ""):
        return False
    return bool((cell.locator(".jp-InputArea-editor").first.text_content() or "").strip())


def run_all(page, timeout_ms: int = 180_000) -> None:
    """Run every code cell of the open notebook in order.

    JupyterLab adds a notebook's cells to the page progressively, so the number of cells is read again
    after each one (and after the cell list has settled) instead of once at the start.
    """
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    _wait_until_cells_settle(page)
    index = 0
    while index < cells.count():
        if _is_code(cells.nth(index)):
            run_cell(page, index, timeout_ms)
        index += 1
        if index == cells.count():
            _wait_until_cells_settle(page)
    prompts = [(i, cells.nth(i).locator(".jp-InputArea-prompt").first.text_content() or "")
               for i in range(cells.count()) if _is_code(cells.nth(i))]
    unrun = [i for i, prompt in prompts if not _PROMPT_NUMBER.search(prompt)]
    assert not unrun, f"code cells {unrun} did not run"


def wait_for(predicate, timeout_s: float, what: str):
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def progress_step(status_text: str) -> int:
    """The step number in a Dashboard status line ("training · epoch 1/3 · step 12/171 · …"); -1 if none."""
    match = re.search(r"step (\d+)/", status_text)
    return int(match.group(1)) if match else -1


def cell_output(page, index: int):
    """The output area of cell ``index`` of the open notebook."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    return cells.nth(index).locator(".jp-OutputArea")


def output_text(page, index: int, *texts: str, timeout_s: float = 60) -> str:
    """The text of cell ``index``'s output once it contains every one of ``texts``.

    A finished prompt says the kernel replied, not that the front end has drawn the output: widget views
    load their ES module and render afterwards, and an off-screen cell may not be laid out at all. So the
    cell is scrolled into view and its text polled.
    """
    area = cell_output(page, index)

    def shown() -> str | None:
        area.first.scroll_into_view_if_needed()
        text = area.first.inner_text()
        return text if all(t in text for t in texts) else None

    try:
        return wait_for(shown, timeout_s, f"cell {index} to show {texts!r}")
    except AssertionError as error:
        raise AssertionError(f"{error}; it shows {area.first.inner_text()[:500]!r}") from None


def set_theme(page, light: bool) -> None:
    """Switch JupyterLab's theme through the command palette and wait until it applies."""
    theme = "JupyterLab Light" if light else "JupyterLab Dark"
    if page.evaluate("document.body.dataset.jpThemeLight") == ("true" if light else "false"):
        return
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input")
    palette.wait_for()
    palette.fill(f"Use Theme: {theme}")
    page.locator(".lm-CommandPalette-item", has_text=f"Use Theme: {theme}").first.click()
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{'true' if light else 'false'}'",
                           timeout=30_000)
    page.wait_for_timeout(500)  # the theme's CSS variables reach every element


def show_file_browser(page, shown: bool) -> None:
    """Open (or close) the file browser in the left side panel."""
    tab = page.locator(".jp-SideBar.lm-TabBar .lm-TabBar-tab[data-id='filebrowser']")
    browser = page.locator("#filebrowser")
    if browser.is_visible() != shown:
        tab.click()
        wait_for(lambda: browser.is_visible() == shown, 15, "the file browser to open or close")
        page.wait_for_timeout(400)  # the main area re-lays out


# Elements whose text a person cannot read: content wider than the box that clips it (cut text, "…"), and
# boxes that stick out of the output area. Inputs scroll their own text and are left out; so is the tree's
# vertical scroller, a box made to scroll sideways (class ms-scroll-x: a wide table, whose own overflow is
# not "sticking out") and text cut with "…" whose full text shows on hover (its title holds it).
# Returns [{what, text, scrollWidth, clientWidth}] (empty: nothing is cut).
_CLIPPED_JS = """
(root) => {
  const out = [];
  const area = root.closest('.jp-OutputArea-output') || root;
  const limit = area.getBoundingClientRect().right + 1;
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (el.closest('input, textarea, select, svg') && el.tagName !== 'svg') continue;
    if (el.closest('pre')) continue;  // code scrolls sideways, as in any code cell
    if (el.classList.contains('ms-scroll-x')) continue;  // scrolls sideways by design
    const inScroller = el.parentElement && el.parentElement.closest('.ms-scroll-x');
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden' || !el.getClientRects().length) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const name = `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`;
    const text = (el.innerText || el.textContent || '').trim().slice(0, 60);
    const hover = el.title && text && el.title.includes(text.replace(/…$/, ''));  // full text on hover
    if (style.overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      if (!hover) out.push({what: name, text, scrollWidth: el.scrollWidth, clientWidth: el.clientWidth});
    } else if (box.right > limit && !el.closest('.ms-tree-spacer') && !inScroller)
      out.push({what: name + ' (sticks out)', text, scrollWidth: Math.round(box.right),
                clientWidth: Math.round(limit)});
  }
  return out;
}
"""


# Words split over two lines: every run of characters without a space, dash or slash in a text node must sit
# on one line (a table that wraps "block1.bn.moving_variance" letter by letter fails).
# Returns [{word, lines, where}].
_BROKEN_WORDS_JS = """
(root) => {
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest('pre, svg, input, textarea, select, script, style')) continue;
    if (!parent.getClientRects().length) continue;  // not shown (a hidden tab)
    const text = node.textContent;
    for (const match of text.matchAll(/[^\\s\\-\u2013\u2014\\/]{2,}/g)) {  // a dash or slash may end a line
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const rects = [...range.getClientRects()].filter((r) => r.width > 0);
      const tops = new Set(rects.map((r) => Math.round(r.top)));
      if (tops.size > 1)
        out.push({word: match[0].slice(0, 60), lines: tops.size,
                  where: `${parent.tagName.toLowerCase()}.${[...parent.classList].join('.')}`});
    }
  }
  return out;
}
"""


def broken_words(locator) -> list[dict]:
    """Words split over two lines inside ``locator``'s element (shown parts only); [] when none is."""
    return locator.evaluate(_BROKEN_WORDS_JS)


def clipped(locator) -> list[dict]:
    """What a person cannot read in ``locator``'s element (see ``_CLIPPED_JS``); [] when nothing is cut."""
    return locator.evaluate(_CLIPPED_JS)


def lab_env(lab: Lab) -> dict[str, str]:
    """The environment of the lab's server: its isolated Jupyter folders (the notary's key among them)."""
    return jupyter_env(lab.root.parent, GLOG_v="3")


def screenshot(page, name: str) -> Path:
    """Save a screenshot as ``test-artifacts/<name>.png`` for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path))
    return path
