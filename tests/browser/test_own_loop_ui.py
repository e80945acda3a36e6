"""Your own MindSpore 2.x loop running in the foreground cell of a real JupyterLab: the chart's Stop button
reaches the busy kernel and ends the loop after the next step, and the kernel's interrupt (■) ends it the same
way, with the history kept, the final figure drawn and no traceback."""

from __future__ import annotations

import re
import time

import pytest

from .conftest import cell_output, open_notebook, output_text, run_cell, screenshot, wait_for, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """
import numpy as np
import mindspore as ms
from mindspore import nn
from mindspore.dataset import NumpySlicesDataset
from sklearn.datasets import load_digits
from ms_notebook import LiveCurves

digits = load_digits()
x = (digits.images / 16.0).astype(np.float32)[:, None]
y = digits.target.astype(np.int32)
dataset = lambda: NumpySlicesDataset((x, y), column_names=["image", "label"], shuffle=False).batch(32)
ms.set_seed(0)
net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 64), nn.ReLU(), nn.Dense(64, 10))
loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
optimizer = nn.Momentum(net.trainable_params(), 0.02, 0.9)

def forward_fn(data, label):
    logits = net(data)
    return loss_fn(logits, label), logits

grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

@ms.jit
def train_step(data, label):
    (loss, _), grads = grad_fn(data, label)
    optimizer(grads)
    return loss

print("ready")
"""

LOOP = """
import time
with LiveCurves(label="{label}", epochs=1000) as curves:
    for epoch in range(1000):
        for images, labels in curves.steps(dataset().create_tuple_iterator()):
            curves.log(loss=train_step(images, labels))
            time.sleep(0.05)  # a step of ~70 ms, like the demo's
print("loop ended:", curves.state, len(curves.history), "steps")
"""


def _start(page, index: int) -> None:
    """Run cell ``index`` without waiting for it to finish (Shift+Enter, retried until the prompt shows *)."""
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea-prompt").first.filter(has_text="[").wait_for(timeout=30_000)
    for _ in range(10):
        cell.locator(".jp-InputArea-prompt").first.click()
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+Enter")
        try:
            wait_for(lambda: "*" in cell.locator(".jp-InputArea-prompt").first.inner_text(), 3, "the start")
            return
        except AssertionError:
            continue
    raise AssertionError(f"cell {index} did not start")


def _finished(page, index: int) -> bool:
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)
    return bool(re.search(r"\[\d+\]", cell.locator(".jp-InputArea-prompt").first.inner_text()))


def _live_step(chart) -> int:
    match = re.search(r"step (\d+)", chart.locator(".ms-live-chart-progress").inner_text())
    return int(match.group(1)) if match else 0


def test_stop_and_interrupt_end_a_foreground_loop_at_a_step_boundary(page, lab):
    write_notebook(lab, "own_loop.ipynb", [SETUP, LOOP.format(label="stop button"),
                                           LOOP.format(label="interrupted")])
    open_notebook(page, lab, "own_loop.ipynb")
    prompts = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputArea-prompt")
    wait_for(lambda: prompts.count() == 3, 60, "the cell prompts")
    time.sleep(1.0)
    run_cell(page, 0, timeout_ms=180_000)
    output_text(page, 0, "ready")

    # 1. the chart's Stop button, pressed while the cell keeps the kernel busy
    _start(page, 1)
    chart = cell_output(page, 1).locator(".ms-live-chart").first
    stop = chart.locator("button.ms-live-chart-stop")
    wait_for(lambda: stop.is_visible() and stop.is_enabled() and _live_step(chart) > 20, 120,
             "steps and Stop")
    assert "ETA" in chart.locator(".ms-live-chart-progress").inner_text()
    assert "running" in chart.locator(".ms-live-chart-status").inner_text()
    screenshot(page, "own_loop_running")
    stop.click()
    pressed = time.monotonic()
    wait_for(lambda: _finished(page, 1), 30, "the cell to finish after Stop")
    took = time.monotonic() - pressed
    text = output_text(page, 1, "loop ended")
    assert "loop ended: stopped" in text and "Error" not in text and "Traceback" not in text
    assert took < 5, f"the loop took {took:.1f} s to end after Stop"
    # the final figure replaced the live view in place
    wait_for(lambda: cell_output(page, 1).locator("img").count() > 0, 30, "the final figure")
    screenshot(page, "own_loop_stopped")

    # 2. the kernel's interrupt (■ in the toolbar) during the loop: a Stop too, no traceback
    _start(page, 2)
    chart = cell_output(page, 2).locator(".ms-live-chart").first
    wait_for(lambda: chart.count() and _live_step(chart) > 20, 120, "steps of the second loop")
    toolbar = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    toolbar.locator("[data-command='notebook:interrupt-kernel']").first.click()
    wait_for(lambda: _finished(page, 2), 30, "the cell to finish after the interrupt")
    text = output_text(page, 2, "loop ended")
    assert "loop ended: stopped" in text and "KeyboardInterrupt" not in text and "Traceback" not in text
    wait_for(lambda: cell_output(page, 2).locator("img").count() > 0, 30, "the final figure")
