"""The Studio's buttons on your own MindSpore 2.x step (Studio(make_train_step=...)) in JupyterLab: Apply a
preset, Fine-tune, watch progress, Stop, Evaluate; the runner behind them trains with the step you wrote."""

from __future__ import annotations

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
import mindspore as ms
from mindspore import nn
import ms_notebook as msn
from ms_notebook import demo

loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
built = []

def step_builder(net):
    def make_train_step(optimizer):
        def forward_fn(data, label):
            logits = net(data)
            return loss_fn(logits, label), logits

        grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

        @ms.jit
        def train_step(data, label):
            (loss, _), grads = grad_fn(data, label)
            optimizer(grads)
            return loss

        built.append([p.name for p in optimizer.parameters])
        return train_step

    return make_train_step

net = demo.DigitsNet(num_classes=5, seed=1)
train_data, eval_data = demo.datasets("transfer", batch_size=16)
studio = msn.Studio(net, demo.pretrained_checkpoint(), train_data, eval_data, epochs=300, loss_fn=loss_fn,
                    make_train_step=step_builder(net))
studio
"""
CHECK = "print('functional', studio.runner.functional, 'steps built', len(built), built[-1])"
_STATUS = re.compile(r"^(ready|training|stopping|stopped|evaluating|done)")


def test_studio_buttons_run_your_own_train_step(page, lab, demo_checkpoint):
    write_notebook(lab, "own_step_studio.ipynb", [SETUP, CHECK])
    open_notebook(page, lab, "own_step_studio.ipynb")
    page.wait_for_timeout(1500)
    run_cell(page, 0, timeout_ms=180_000)
    studio = cell_output(page, 0).locator(".ms-studio")
    studio.wait_for(timeout=60_000)

    studio.locator(".lm-TabBar-tab", has_text="Transfer").click()
    panel = studio.locator(".ms-transfer-panel")
    panel.wait_for(timeout=15_000)
    panel.get_by_role("button", name="Freeze backbone").click()
    wait_for(lambda: "98.2% frozen" in panel.locator(".ms-transfer-summary").inner_text(), 60, "the preset")
    panel.locator("button", has_text=re.compile(r"^\s*Apply\s*$")).click()
    panel.locator(".ms-transfer-report").wait_for(timeout=60_000)

    studio.locator(".lm-TabBar-tab", has_text="Run").click()
    run = studio.locator(".ms-dashboard")
    run.wait_for(timeout=30_000)
    status = run.locator(".ms-dashboard-status").filter(has_text=_STATUS).first
    fine_tune = run.get_by_role("button", name="Fine-tune")
    stop = run.get_by_role("button", name="Stop")
    evaluate = run.get_by_role("button", name="Evaluate")
    fine_tune.click()
    first = wait_for(lambda: progress_step(status.inner_text()) > 0 and status.inner_text(), 180, "progress")
    assert first.startswith("training") and "/300" in first
    wait_for(lambda: progress_step(status.inner_text()) > progress_step(first) + 20, 180, "more steps")
    screenshot(page, "studio_own_step_training")
    stop.click()
    done = wait_for(lambda: status.inner_text().startswith("stopped") and status.inner_text(), 90, "Stop")
    stopped_at = progress_step(done)
    time.sleep(1.0)
    assert progress_step(status.inner_text()) == stopped_at < 300 * 7
    wait_for(evaluate.is_enabled, 30, "Evaluate enabled")
    evaluate.click()
    wait_for(lambda: "accuracy" in run.inner_text().lower() and "evaluat" in run.inner_text().lower(), 90,
             "the evaluation")

    run_cell(page, 1)
    printed = output_text(page, 1, "functional")
    assert "functional True" in printed
    assert "['head.weight', 'head.bias']" in printed  # the step was built over what the preset trains
