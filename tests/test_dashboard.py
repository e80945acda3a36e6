"""Dashboard model: buttons enabled only when they make sense, progress, metrics and errors shown inside."""

from __future__ import annotations

import os
import threading
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import Runner
from ms_notebook.widgets.dashboard import Dashboard, format_seconds, metrics_rows, progress_text
from tests.digits_data import digits

pytestmark = pytest.mark.slow




def make_dashboard(train_count: int = 320) -> Dashboard:
    ms.set_seed(3)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10))
    runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                    nn.Momentum(net.trainable_params(), 0.05, 0.9), digits(0, train_count), digits(1000, 96),
                    curves=LiveCurves(display=False))
    return Dashboard(runner, epochs=2, max_updates_per_s=50)


def buttons(dash: Dashboard) -> tuple[bool, bool, bool]:
    """Which buttons are enabled: (evaluate, fine-tune, stop)."""
    return (not dash.evaluate_button.disabled, not dash.fit_button.disabled, not dash.stop_button.disabled)


def wait_idle(dash: Dashboard, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while dash.runner.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not dash.runner.running


def test_buttons_follow_evaluate_fit_and_stop():
    dash = make_dashboard(train_count=960)  # 30 steps per epoch
    assert buttons(dash) == (True, True, False)
    seen_during_fit = []

    def record(event, _runner):
        if event == "step":
            seen_during_fit.append(buttons(dash))

    dash.runner.add_listener(record)
    dash.fit_button.click()
    assert dash.runner.running
    deadline = time.monotonic() + 60
    while len(seen_during_fit) < 3 and time.monotonic() < deadline:  # past graph compilation
        time.sleep(0.01)
    assert buttons(dash) == (False, False, True)
    assert dash.device.disabled and dash.epochs.disabled and dash.lr.disabled
    before_stop = list(seen_during_fit)
    dash.stop_button.click()
    assert dash.stop_button.disabled  # stopping (or stopped): no second Stop
    assert dash.runner.state in ("stopping", "idle")
    wait_idle(dash)
    assert buttons(dash) == (True, True, False)
    assert len(dash.runner.history) < 60  # stopped before the two epochs ended
    assert before_stop and all(state == (False, False, True) for state in before_stop)
    dash.evaluate_button.click()
    wait_idle(dash)
    assert buttons(dash) == (True, True, False)
    assert "evaluate: accuracy" in dash.metrics.value


def test_fine_tune_shows_progress_metrics_and_uses_the_learning_rate():
    dash = make_dashboard()
    dash.lr.value = 0.02
    dash.epochs.value = 2
    dash.fit_button.click()
    wait_idle(dash)
    assert dash.progress.value == pytest.approx(1.0)
    assert dash.status_text.startswith("done · epoch 2/2 · step 20/20")
    assert "eval_accuracy" in dash.metrics.value
    assert dash.runner.history["lr"].dropna().round(6).unique().tolist() == [0.02]
    assert dash.error.value == ""
    # the live chart got every step the history has, as float32, and the epoch metrics
    steps, losses = dash.curves.values()
    history = dash.runner.history
    assert steps.tolist() == history["step"].astype(float).tolist()
    np.testing.assert_allclose(losses, history["loss"].to_numpy(np.float32), rtol=1e-6)
    assert [e["epoch"] for e in dash.curves.epochs] == [1, 2]
    assert all(0.0 <= e["eval_accuracy"] <= 1.0 for e in dash.curves.epochs)
    assert dash.curves.live is False
    # embedded in the dashboard the chart stays: no PNG was rendered by the kernel
    assert dash.runner.curves.view.draw_count == 0


def test_errors_are_shown_inside_the_widget():
    dash = make_dashboard()

    def missing():
        raise FileNotFoundError("train.mindrecord not found")

    dash.runner.train_data = missing
    dash.fit_button.click()
    wait_idle(dash)
    assert "train.mindrecord not found" in dash.error.value
    assert buttons(dash) == (True, True, False)
    dash.lr.value = -1.0
    dash.runner.train_data = digits(0, 64)
    dash.fit_button.click()
    assert "learning rate must be positive" in dash.error.value
    assert threading.active_count() >= 1 and not dash.runner.running


def test_progress_text_and_eta_formatting():
    assert format_seconds(None) == "–"
    assert format_seconds(5.4) == "5 s"
    assert format_seconds(185) == "3 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"
    text = progress_text({"step": 10, "total": 40, "epoch": 1, "epochs": 2, "steps_per_s": 5.0, "eta_s": 6.0},
                         "training")
    assert text == "training · epoch 1/2 · step 10/40 · 5.0 steps/s · ETA 6 s"
    early = progress_text({"step": 1, "total": 40, "epoch": 1, "epochs": 2, "eta_s": None}, "training")
    assert early.endswith("ETA estimating…")  # one step (compilation): no guess
    continued = progress_text({"step": 12, "total": 50, "epoch": 3, "epochs": 5, "first_epoch": 36,
                               "last_epoch": 40, "global_epoch": 38, "global_step": 362, "steps_per_s": 5.0,
                               "eta_s": 7.6}, "training")
    assert continued == ("training · epochs 36–40 · epoch 38 · step 362 (12/50 this run) · 5.0 steps/s · "
                         "ETA 8 s")
    assert progress_text({"step": 0, "total": 0}, "idle") == "ready"
    assert progress_text({"step": 40, "total": 40, "epoch": 2, "epochs": 2}, "idle").startswith("done ·")
    assert progress_text({"step": 12, "total": 40, "epoch": 1, "epochs": 2}, "idle").startswith("stopped ·")


def test_a_second_fine_tune_says_which_epochs_it_covers_as_the_table_does():
    dash = make_dashboard()  # 10 steps per epoch
    dash.runner.fit(2)
    dash.epochs.value = 3
    dash.fit_button.click()
    wait_idle(dash)
    assert dash.status_text.startswith("done · epochs 3–5 · epoch 5 · step 50 (30/30 this run)")
    table = dict(metrics_rows(dash.runner))
    assert (table["epoch"], table["step"]) == ("5", "50")  # the same numbers as the status line
    steps, _ = dash.curves.values()
    assert steps[-1] == 50.0  # and the chart's last point


def test_unavailable_controls_look_and_say_so():
    dash = make_dashboard()
    # a disabled Stop is not orange
    assert (dash.fit_button.button_style, dash.stop_button.button_style) == ("primary", "")
    if len(dash.device.options) == 1:
        assert "only CPU is available" in dash.device.tooltip
    dash.runner.fit(1)
    dash.refresh()
    assert dash.device.disabled
    assert "restart the kernel" in dash.device.tooltip and "restart the kernel" in dash.device_note.value
    for name in ("device", "epochs", "lr"):
        assert getattr(dash, name).style.description_width == "initial"  # "learning rate", not "learning r…"


def test_the_static_copy_shows_the_status_table_and_the_curves():
    dash = make_dashboard()
    dash.runner.fit(1)
    dash.refresh()
    bundle = dash.static_bundle()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.model_id
    html_copy = bundle["text/html"]
    assert dash.status_text.split(" · ")[0] in html_copy and "eval_accuracy" in html_copy
    assert 'class="ms-static-figure"' in html_copy and bundle["image/png"]
    assert dash.static_png() is dash.static_png()  # drawn once until the history changes
    assert dash.figures_drawn == 1


def test_an_evaluation_is_labelled_with_its_step_and_leaves_once_training_moves_on():
    dash = make_dashboard(train_count=64)
    dash.runner.evaluate()
    dash.refresh()
    table = dict(metrics_rows(dash.runner, dash._evaluation_step()))
    assert table["evaluated"] == "before training" and "evaluate: accuracy" in table
    dash.runner.fit(1)
    dash.refresh()
    assert "evaluate: accuracy" not in dash.metrics.value  # a stale figure is not shown as current
    assert "eval_accuracy" in dash.metrics.value  # the run's own evaluation is
    dash.runner.evaluate()
    dash.refresh()
    step = dict(metrics_rows(dash.runner))["step"]
    assert f"at step {step}" in dash.metrics.value and "evaluate: accuracy" in dash.metrics.value


def test_a_dashboard_saves_last_and_best_by_default_in_a_run_folder_it_names(tmp_path, monkeypatch):
    from ms_notebook.runs.checkpoints import default_run_dir

    dash = make_dashboard(train_count=64)
    folder = dash.runner.run_dir
    assert folder is not None and str(folder).startswith(os.environ["MS_NOTEBOOK_RUNS"])
    assert "last.ckpt and best.ckpt" in dash.run_dir_note.value and folder.name in dash.run_dir_note.value
    dash.runner.fit(1)
    assert (folder / "last.ckpt").is_file() and (folder / "best.ckpt").is_file()
    assert folder.name in dash.static_html()
    monkeypatch.delenv("MS_NOTEBOOK_RUNS")
    monkeypatch.chdir(tmp_path)  # in Jupyter: the notebook's folder
    beside = default_run_dir("run 2: frozen backbone")
    assert beside.parent == tmp_path / "runs" and beside.name.endswith("-run-2-frozen-backbone")
    assert default_run_dir("run 2: frozen backbone") != beside  # two asked in the same second differ
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 10))
    runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                    nn.Momentum(net.trainable_params(), 0.05, 0.9), digits(0, 64),
                    curves=LiveCurves(display=False))
    none = Dashboard(runner, run_dir=None)
    assert none.runner.run_dir is None and "none saved" in none.run_dir_note.value
