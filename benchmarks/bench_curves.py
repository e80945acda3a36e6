"""Overhead of LiveCurves and of the Dashboard on one epoch of fine-tuning a small CNN (GRAPH mode, CPU).

The measurement runs inside a real IPython kernel (started here with jupyter_client), so the live chart's
comm messages and the final figure's display update really go out, as in a notebook. The variants run
interleaved, several times, in a rotating order; it prints the median epoch time of each, the ratios to plain
``Model.train``, and the time spent inside our callbacks (which the machine's noise does not blur).
Target: overhead <= 2 %.
Usage: ``GLOG_v=3 python benchmarks/bench_curves.py [repeats]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.dataset import NumpySlicesDataset
from sklearn.datasets import load_digits

from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import Runner
from ms_notebook.widgets.dashboard import Dashboard


class SmallCNN(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2, 2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.dense = nn.Dense(32 * 4 * 4, 64)
        self.head = nn.Dense(64, 10)

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        return self.head(self.relu(self.dense(self.flatten(x))))


def dataset_factory(copies: int = 1):
    data = load_digits()
    images = np.tile((data.images / 16.0).astype(np.float32)[:, None], (copies, 1, 1, 1))
    labels = np.tile(data.target.astype(np.int32), copies)
    columns = ["image", "label"]
    return lambda: NumpySlicesDataset((images, labels), column_names=columns, shuffle=False).batch(32)


def build():
    net = SmallCNN()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    return net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9)


def _timed(name: str):
    """A LiveCurves callback method that adds its own duration to ``TimedLiveCurves.inside``."""
    def method(self, run_context):
        started = time.perf_counter()
        getattr(LiveCurves, name)(self, run_context)
        TimedLiveCurves.inside += time.perf_counter() - started
    return method


class TimedLiveCurves(LiveCurves):
    """LiveCurves that also adds up the time spent inside its callback methods (its whole cost on the
    training thread: recording, chart updates, the final PNG), to check the side-by-side ratios."""

    inside = 0.0
    on_train_begin = _timed("on_train_begin")
    on_train_epoch_begin = _timed("on_train_epoch_begin")
    on_train_step_end = _timed("on_train_step_end")
    on_train_epoch_end = _timed("on_train_epoch_end")
    on_train_end = _timed("on_train_end")


def measure(repeats: int) -> None:
    """The measurement itself; runs inside the kernel."""
    from IPython.display import display

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    data = dataset_factory()
    steps = data().get_dataset_size()

    net, loss, opt = build()
    runner = Runner(net, loss, opt, data, curves=TimedLiveCurves(label="dashboard", display=True))
    dashboard = Dashboard(runner)
    display(dashboard)
    notify = runner._notify

    def timed_notify(event: str) -> None:  # the Dashboard's own updates (progress, status, metrics table)
        started = time.perf_counter()
        notify(event)
        TimedLiveCurves.inside += time.perf_counter() - started

    runner._notify = timed_notify
    runner.fit(1)  # compiles; every variant then trains this same Model (separate ones differ by up to 10 %)
    model = runner.model
    drawn: list[LiveCurves] = []

    def plain() -> None:
        model.train(1, data(), dataset_sink_mode=False)

    def recording_only() -> None:  # LiveCurves without a view: the per-step recording alone
        model.train(1, data(), dataset_sink_mode=False, callbacks=[TimedLiveCurves(display=False)])

    def with_curves() -> None:  # a live chart in the cell, replaced by the final PNG at the end
        curves = TimedLiveCurves(display=True)
        model.train(1, data(), dataset_sink_mode=False, callbacks=[curves])
        drawn.append(curves)

    def with_dashboard() -> None:  # the Dashboard shown above, its chart live
        runner.fit(1)

    variants = {"plain Model.train": plain, "plain, again": plain, "LiveCurves, no view": recording_only,
                "with LiveCurves": with_curves, "with Dashboard": with_dashboard}
    for run in variants.values():  # compile the graphs once
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    inside: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # every variant in every slot
            run = variants[name]
            TimedLiveCurves.inside = 0.0
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
            inside[name].append(TimedLiveCurves.inside)
    plain_times = times["plain Model.train"]
    base = statistics.median(plain_times)
    print(f"one epoch = {steps} steps of batch 32, small CNN, GRAPH mode, inside an IPython kernel; "
          f"{repeats} repeats, the order rotated each time; all variants train the same Model")
    print("ratio: median over repeats of (variant / plain run of the same repeat); 'plain, again' shows")
    print("the machine's noise. inside: time spent in LiveCurves' callbacks (recording, chart updates, final")
    print("PNG) and in the Dashboard's updates, as a share of the epoch: their whole cost on the training")
    print("thread, which noise does not blur")
    for name, values in times.items():
        ratios = [value / plain for value, plain in zip(values, plain_times, strict=True)]
        ratio = statistics.median(ratios)
        share = statistics.median(i / t for i, t in zip(inside[name], values, strict=True))
        print(f"{name:19s} wall {statistics.median(values) * 1000:7.0f} ms  ratio {ratio:.3f} "
              f"({100 * (ratio - 1):+5.1f} %)  inside {100 * share:4.1f} %")
    last = drawn[-1].view
    pushes, pngs = last.push_count, last.draw_count
    started = time.perf_counter()
    last.render()
    final_ms = (time.perf_counter() - started) * 1000
    print(f"LiveCurves: {pushes} chart updates and {pngs} PNG per run; the final PNG "
          f"costs {final_ms:.0f} ms ({100 * final_ms / 1000 / base:.1f} % of a plain epoch)")
    print(f"Dashboard: {runner.curves.view.push_count} chart updates over its {repeats + 1} runs; its chart "
          f"stays live, and its saved copy drew {dashboard.figures_drawn} PNGs (one per finished run)")


def main() -> None:
    """Start a kernel, run ``measure`` in it, and print what it prints."""
    from jupyter_client.manager import start_new_kernel

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, "GLOG_v": "3"})
    messages = {"display": 0, "comm": 0}

    def on_output(message: dict) -> None:
        kind = message["msg_type"]
        if kind == "stream":
            print(message["content"]["text"], end="", flush=True)
        elif kind == "error":
            print("\n".join(message["content"]["traceback"]))
        elif kind in ("display_data", "update_display_data"):
            messages["display"] += 1
        elif kind.startswith("comm_"):
            messages["comm"] += 1

    try:
        # imported as a module: GRAPH mode parses the network's source through its importable module
        folder = os.path.dirname(os.path.abspath(__file__))
        code = (f"import sys\nsys.path.insert(0, {folder!r})\n"
                f"import bench_curves\nbench_curves.measure({repeats})")
        reply = client.execute_interactive(code, timeout=3600, output_hook=on_output)
        print(f"kernel sent {messages['comm']} comm and {messages['display']} display messages")
        if reply["content"]["status"] != "ok":
            sys.exit(1)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
