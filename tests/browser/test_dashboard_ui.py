"""The dashboard in a real JupyterLab: press Fine-tune, watch progress and curves update, press Stop."""

from __future__ import annotations

import math
import re
import time

import pytest

from .conftest import (
    cell_output,
    open_notebook,
    output_text,
    progress_step,
    run_cell,
    screenshot,
    wait_for,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """
import numpy as np
import mindspore as ms
from mindspore import nn
from mindspore.dataset import NumpySlicesDataset
from sklearn.datasets import load_digits
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import Runner
from ms_notebook.widgets.dashboard import Dashboard

digits = load_digits()
x = (digits.images / 16.0).astype(np.float32)[:, None]
y = digits.target.astype(np.int32)
cols = ["image", "label"]
train = lambda: NumpySlicesDataset((x[:1500], y[:1500]), column_names=cols, shuffle=False).batch(32)
valid = lambda: NumpySlicesDataset((x[1500:], y[1500:]), column_names=cols, shuffle=False).batch(32)
ms.set_seed(0)
net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 64), nn.ReLU(), nn.Dense(64, 10))
runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                nn.Momentum(net.trainable_params(), 0.02, 0.9), train, valid,
                curves=LiveCurves(label="digits"))
print("runner ready")
"""


def _luminance(locator) -> float:
    """Relative brightness (0 black .. 1 white) of an SVG text's computed fill colour."""
    fill = locator.evaluate("node => getComputedStyle(node).fill")
    channels = re.findall(r"\d+", fill)[:3]
    if len(channels) < 3:  # no colour yet (the chart is redrawn as the theme changes): NaN, so waits go on
        return math.nan
    red, green, blue = (int(v) for v in channels)
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def _theme(page, name: str) -> None:
    """Switch JupyterLab's theme from the Settings menu and wait until it applies."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(f'.lm-Menu-itemLabel:text-is("{name}")').click()
    light = "true" if "Light" in name else "false"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'")


def _status(output) -> str:
    return output.locator(".ms-dashboard-status").first.inner_text()


def test_fine_tune_updates_progress_and_curves_and_stop_ends_it(page, lab):
    write_notebook(lab, "dashboard.ipynb", [
        SETUP, "Dashboard(runner, epochs=2000)",
        "steps, _ = runner.curves.view.chart.values()\n"
        "print('style', runner.curves.smoothing, runner.curves.log_y, len(steps))",
    ])
    open_notebook(page, lab, "dashboard.ipynb")
    # run_cell compares the prompt before and after: wait until the prompts have rendered, or an empty
    # prompt read too early looks like a cell that started
    prompts = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputArea-prompt")
    wait_for(lambda: prompts.count() == 3 and all("[" in prompts.nth(i).inner_text() for i in range(3)), 60,
             "the cell prompts")
    time.sleep(1.0)
    run_cell(page, 0, timeout_ms=180_000)
    output_text(page, 0, "runner ready")
    run_cell(page, 1)
    output = cell_output(page, 1).first  # the cell's own area (the curves are a nested one)
    fine_tune = output.locator("button", has_text="Fine-tune")
    stop = output.locator("button", has_text="Stop")
    fine_tune.wait_for(timeout=60_000)
    assert stop.is_disabled() and fine_tune.is_enabled()
    screenshot(page, "dashboard_ready")

    fine_tune.click()
    first = wait_for(lambda: progress_step(_status(output)) > 0 and _status(output), 120, "training progress")
    assert first.startswith("training")
    assert stop.is_enabled() and fine_tune.is_disabled()
    # the browser draws the curves from the numbers the kernel streams: the loss line grows as steps go by
    chart = output.locator(".ms-live-chart")
    line = chart.locator("path.ms-series-current.ms-series-loss")
    first_line = wait_for(lambda: line.count() and line.first.get_attribute("d"), 60, "the loss line")
    wait_for(lambda: progress_step(_status(output)) > progress_step(first) + 30, 120, "more steps")
    grown = wait_for(lambda: (d := line.first.get_attribute("d")) and len(d) > len(first_line) and d,
                     60, "the loss line to grow")
    assert grown.count("L") > first_line.count("L")
    assert "digits · running" in chart.locator(".ms-live-chart-status").inner_text()
    screenshot(page, "dashboard_training")

    stop.click()
    done = wait_for(lambda: _status(output).startswith("stopped") and _status(output), 60, "the run to stop")
    stopped_at = progress_step(done)
    assert 0 < stopped_at < 2000 * 47
    assert fine_tune.is_enabled() and stop.is_disabled()
    time.sleep(1.0)
    assert progress_step(_status(output)) == stopped_at  # nothing runs after Stop
    chart_status = chart.locator(".ms-live-chart-status")
    wait_for(lambda: "stopped" in chart_status.inner_text(), 30, "the chart to end")
    # the chart's own controls reach the kernel: log scale and smoothing
    chart.locator("input.ms-live-chart-log").check()
    slider = chart.locator("input.ms-live-chart-smoothing")
    slider.focus()
    slider.press("Home")  # smoothing 0: the raw loss line only
    wait_for(lambda: chart.locator("path.ms-series-raw").count() == 0, 30, "the raw line to go (smoothing 0)")
    screenshot(page, "dashboard_stopped")
    # the chart follows JupyterLab's theme: dark text on the light theme, light text on the dark one
    tick = chart.locator("text.ms-tick").first
    _theme(page, "JupyterLab Light")
    wait_for(lambda: _luminance(tick) < 0.5, 30, "dark tick labels")
    _theme(page, "JupyterLab Dark")
    wait_for(lambda: _luminance(tick) > 0.5, 30, "light tick labels")
    chart.screenshot(path=str(screenshot(page, "dashboard-chart-dark")))
    _theme(page, "JupyterLab Light")  # the lab is shared by later tests
    run_cell(page, 2)
    printed = output_text(page, 2, "style")
    assert printed.split()[1:3] == ["0.0", "True"], printed
    assert int(printed.split()[3]) == stopped_at  # every step reached the chart


def test_with_the_extension_evaluate_runs_the_cell_tagged_ms_eval(page, lab):
    import nbformat

    cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("dash = Dashboard(runner)\ndash"),
        nbformat.v4.new_code_cell(
            "print('tagged eval' + ' accuracy', round(runner.evaluate()['accuracy'], 3))"
        ),
    ]
    cells[2].metadata["tags"] = ["ms-eval"]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, lab.root / "dashboard-tagged.ipynb")
    open_notebook(page, lab, "dashboard-tagged.ipynb")
    run_cell(page, 0)
    run_cell(page, 1)  # the Dashboard says hello to the extension; the answer arrives after this cell
    output = cell_output(page, 1)
    output.locator("button", has_text="Evaluate").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')][2]"
        ".innerText.includes('tagged eval accuracy')",  # the output: the source splits the words
        timeout=90_000,
    )
    assert re.search(r"tagged eval accuracy 0\.\d+", cell_output(page, 2).inner_text())
    screenshot(page, "dashboard-tagged-eval")
