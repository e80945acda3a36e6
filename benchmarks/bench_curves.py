"""Overhead of LiveCurves and of the Dashboard on one epoch of fine-tuning a small CNN (GRAPH mode, CPU).

Runs the three variants interleaved, several times, and prints the median epoch time of each and the ratios
to plain ``Model.train``. Target: overhead <= 2 %.
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
from mindspore.train import Model
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


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    data = dataset_factory()
    steps = data().get_dataset_size()

    plain_model = Model(*build())
    curves_model = Model(*build())
    net, loss, opt = build()
    runner = Runner(net, loss, opt, data, curves=LiveCurves(label="dashboard", display=True))
    dashboard = Dashboard(runner)

    def plain() -> None:
        plain_model.train(1, data())

    def with_curves() -> None:
        curves_model.train(1, data(), callbacks=[LiveCurves(display=True)])

    def recording_only() -> None:  # LiveCurves without drawing: the per-step cost alone
        curves_model.train(1, data(), callbacks=[LiveCurves(display=False)])

    def with_dashboard() -> None:
        runner.fit(1)

    variants = {"plain Model.train": plain, "LiveCurves, no draw": recording_only,
                "with LiveCurves": with_curves, "with Dashboard": with_dashboard}
    for run in variants.values():  # compile the graphs once
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    base = statistics.median(times["plain Model.train"])
    cpu_base = statistics.median(cpu["plain Model.train"])
    print(f"one epoch = {steps} steps of batch 32, small CNN, GRAPH mode, {repeats} interleaved repeats")
    print("wall time is what a user waits; process CPU time (all threads, drawing included) is steadier on a")
    print("shared machine")
    for name, values in times.items():
        median, cpu_median = statistics.median(values), statistics.median(cpu[name])
        print(f"{name:19s} wall {median * 1000:8.1f} ms ({median / steps * 1000:6.2f} ms/step) "
              f"ratio {median / base:.3f} ({100 * (median / base - 1):+5.1f} %) | "
              f"cpu {cpu_median:7.2f} s ratio {cpu_median / cpu_base:.3f} "
              f"({100 * (cpu_median / cpu_base - 1):+5.1f} %)")
    print(f"figures drawn during the last dashboard run: {runner.curves.view.draw_count} in total so far; "
          f"{len(dashboard.curves.outputs)} output in the curves area")


if __name__ == "__main__":
    main()
