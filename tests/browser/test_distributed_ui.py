"""The Studio's Run tab with Workers = 2 in JupyterLab: Launch starts a real 2-worker msrun job of the plan's
script, its view draws rank 0's loss as it grows, Stop ends it with every rank's last checkpoint saved and no
process of the job left."""

from __future__ import annotations

import json

import pytest

from .conftest import cell_output, open_notebook, run_cell, screenshot, wait_for, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo_checkpoint() -> str:
    """Build the demo checkpoint in this process's cache before the kernel (same environment) needs it."""
    from ms_notebook.demo import pretrained_checkpoint

    return pretrained_checkpoint()


def test_studio_launches_two_workers_watches_the_curves_grow_and_stops(page, lab, demo_checkpoint):
    from ms_notebook.runs.launch import processes_with_run_dir

    runs = lab.root / "distributed-runs"
    write_notebook(lab, "distributed.ipynb", [
        "import os\n"
        "os.environ.setdefault('GLOG_v', '3')\n"
        "import ms_notebook as msn\n"
        "from ms_notebook import demo\n"
        "train, evaluate = demo.datasets('transfer', batch_size=16)\n"
        "studio = msn.Studio(demo.DigitsNet(num_classes=5, seed=1), demo.pretrained_checkpoint(), train, "
        f"evaluate, epochs=3000, run_dir={str(runs)!r})\n"
        "studio.select_tab('Run')\n"
        "studio",
    ])
    open_notebook(page, lab, "distributed.ipynb")
    run_cell(page, 0, timeout_ms=180_000)
    studio = cell_output(page, 0).locator(".ms-studio")
    studio.wait_for(timeout=60_000)
    workers = studio.locator(".widget-text", has=page.locator("label", has_text="workers")).locator("input")
    workers.fill("2")
    workers.press("Enter")
    launch = studio.get_by_role("button", name="Launch on 2 workers")
    launch.wait_for(timeout=30_000)
    launch.click()

    view = studio.locator(".ms-distributed-run")
    view.wait_for(timeout=60_000)
    status = view.locator(".ms-distributed-status")
    wait_for(lambda: "running" in status.inner_text(), 240, "the job to run")
    line = view.locator(".ms-live-chart path.ms-series-current.ms-series-loss")
    first = wait_for(lambda: line.count() and line.first.get_attribute("d"), 60, "rank 0's loss line")
    grown = lambda: line.first.get_attribute("d").count("L") > first.count("L") + 10  # noqa: E731
    wait_for(grown, 120, "the line to grow")
    assert launch.is_disabled()
    screenshot(page, "distributed-1-running")

    view.get_by_role("button", name="Stop").click()
    wait_for(lambda: "stopped" in status.inner_text(), 120, "the job to stop")
    screenshot(page, "distributed-2-stopped")
    (job,) = runs.glob("launch-*/job.json")
    run_dir = job.parent
    assert json.loads(job.read_text())["workers"] == 2
    assert (run_dir / "rank_0" / "last.ckpt").exists() and (run_dir / "rank_1" / "last.ckpt").exists()
    assert processes_with_run_dir(run_dir) == []
    wait_for(launch.is_enabled, 30, "Launch enabled again")
