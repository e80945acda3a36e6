"""Dashboard and Studio with fastai's tools: Find LR (curve, Use suggestion), Interpret (tables and images),
gradual unfreezing from the freeze-epochs field; static renderings for a notebook without a kernel."""

from __future__ import annotations

import time

import pytest
from mindspore import nn

from ms_notebook import TransferPlan
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import Runner
from ms_notebook.widgets.dashboard import Dashboard
from ms_notebook.widgets.interpretation import InterpretationView
from ms_notebook.widgets.lr_finder import LRFinderView

pytestmark = pytest.mark.slow


def momentum(params):
    return nn.Momentum(params, learning_rate=0.02, momentum=0.9)


def dashboard(pretrained: str) -> Dashboard:
    from ms_notebook.demo import DigitsNet, datasets

    net = DigitsNet(5, seed=1)
    plan = TransferPlan(net, pretrained)
    report = plan.freeze_backbone().apply(optimizer=momentum)
    runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean"), report.optimizer,
                    *datasets("transfer", batch_size=16), plan=plan, curves=LiveCurves(display=False),
                    class_names=["5", "6", "7", "8", "9"], mode="pynative")
    return Dashboard(runner, epochs=1, max_updates_per_s=50)


def wait_idle(dash: Dashboard, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while dash.runner.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not dash.runner.running
    dash.refresh()


def test_find_lr_button_shows_the_curve_and_use_suggestion_fills_the_learning_rate(pretrained):
    dash = dashboard(pretrained)
    assert dash.lr_finder.layout.display == "none" and not dash.find_lr_button.disabled
    dash.find_lr_button.click()
    assert dash.find_lr_button.disabled and not dash.stop_button.disabled  # a run: it can be stopped
    wait_idle(dash)
    result = dash.runner.last_lr_find
    assert dash.lr_finder.layout.display == "" and dash.lr_finder.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "suggested learning rate" in dash.lr_finder.text.value
    dash.lr_finder.use_button.click()
    assert dash.lr.value == pytest.approx(float(f"{result.suggestion:.3g}"))
    bundle = dash.lr_finder.static_bundle()
    assert "image/png" in bundle and "data:image/png;base64," in bundle["text/html"]


def test_interpret_button_shows_confusion_per_class_and_top_loss_images(pretrained):
    dash = dashboard(pretrained)
    dash.fit_button.click()
    wait_idle(dash)
    dash.interpret_button.click()
    wait_idle(dash)
    view = dash.interpretation
    interpretation = dash.runner.last_interpretation
    assert view.layout.display == "" and interpretation is view.interpretation
    assert "Confusion matrix" in view.tables.value and "most confused with" in view.tables.value
    for name in ("5", "6", "7", "8", "9"):
        assert f"<th>{name}</th>" in view.tables.value
    assert view.images.value[:8] == b"\x89PNG\r\n\x1a\n" and view.images.layout.display == ""
    static = InterpretationView(interpretation).static_bundle()["text/html"]
    assert "Confusion matrix" in static and "data:image/png;base64," in static


def test_freeze_epochs_make_fine_tune_unfreeze_gradually(pretrained):
    dash = dashboard(pretrained)
    assert not dash.freeze_epochs.disabled  # the runner has a plan with an optimizer factory
    dash.freeze_epochs.value = 1
    dash.epochs.value = 1
    dash.lr.value = 0.04
    dash.fit_button.click()
    wait_idle(dash)
    kinds = [r["type"] for r in dash.runner.curves.records()]
    assert kinds.count("phase") == 1 and kinds.count("end") == 1
    assert dash.runner.curves.epochs["epoch"].tolist() == [1, 2]
    assert dash.runner.plan.frozen == [] and dash.error.value == ""


def test_an_lr_finder_view_without_a_result_renders_statically():
    assert "not run yet" in LRFinderView().static_bundle()["text/html"]
    assert "not run yet" in InterpretationView().static_bundle()["text/html"]


def test_the_studio_run_tab_shows_the_interpretation(pretrained):
    from ms_notebook.demo import DigitsNet, datasets
    from ms_notebook.widgets.studio import Studio

    train, evaluate = datasets("transfer", batch_size=16)
    studio = Studio(DigitsNet(5, seed=1), pretrained, train, evaluate, epochs=1, mode="pynative",
                    class_names=["5", "6", "7", "8", "9"])
    studio.transfer.preset("freeze_backbone")
    studio.transfer.apply()
    assert studio.runner.plan is studio.plan and studio.runner.can_fine_tune()
    studio.runner.fit(1)
    studio.dashboard.interpret()
    assert studio.dashboard.interpretation in studio.dashboard.children
    assert studio.run_box.children[-1] is studio.dashboard
    assert "Confusion matrix" in studio.dashboard.interpretation.tables.value
