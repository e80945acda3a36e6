"""Your own MindSpore 2.x loop with LiveCurves: what ``curves.steps`` + ``curves.log`` cost per step, and how
long Stop takes to end the loop, in the foreground (the kernel's interrupt, what the chart's Stop sends to a
busy kernel) and from another thread (``curves.stop()``, what a Runner's Stop and an idle kernel's button do).

The demo's transfer task (``demo.datasets("transfer")``, batch 16, frozen backbone, ``@ms.jit`` step) is
trained for whole epochs by a bare loop and by the same loop logging through LiveCurves, interleaved in a
rotating order; the median run times and the time spent inside ``log`` (timed around each call after the step
has synced, which the machine's noise does not blur) are printed. Goal: <= 1 % of the step.
Usage: ``GLOG_v=3 python benchmarks/bench_own_loop.py [repeats]``.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
from mindspore import nn

from ms_notebook import demo
from ms_notebook.runs.curves import LiveCurves


def setup():
    ms.set_context(mode=ms.GRAPH_MODE)
    net = demo.DigitsNet(num_classes=5, seed=1)
    param_dict = ms.load_checkpoint(demo.pretrained_checkpoint())
    own = {p.name for p in net.get_parameters()}
    backbone = {k: v for k, v in param_dict.items() if k in own and not k.startswith("head.")}
    ms.load_param_into_net(net, backbone)
    for param in net.get_parameters():
        if not param.name.startswith("head."):
            param.requires_grad = False
    optimizer = nn.Momentum(net.trainable_params(), 0.02, 0.9)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def forward_fn(data, label):
        logits = net(data)
        return loss_fn(logits, label), logits

    grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

    @ms.jit
    def train_step(data, label):
        (loss, _), grads = grad_fn(data, label)
        optimizer(grads)
        return loss

    train, _ = demo.datasets("transfer", batch_size=16)
    return net, train_step, train


EPOCHS = 5  # per measurement


def bare_epoch(train_step, train) -> tuple[float, float, int]:
    started = time.perf_counter()
    steps = 0
    for _ in range(EPOCHS):
        for data, label in train().create_tuple_iterator():
            train_step(data, label).asnumpy()  # the same device sync log() does (it reads the loss)
            steps += 1
    return time.perf_counter() - started, 0.0, steps


def logged_epoch(train_step, train, curves: LiveCurves) -> tuple[float, float, int]:
    started = time.perf_counter()
    inside = 0.0
    steps = 0
    for _ in range(EPOCHS):
        inside, steps = _logged(train_step, train, curves, inside, steps)
    return time.perf_counter() - started, inside, steps


def _logged(train_step, train, curves: LiveCurves, inside: float, steps: int) -> tuple[float, int]:
    iterator = curves.steps(train().create_tuple_iterator())
    while True:
        try:
            data, label = next(iterator)
        except StopIteration:
            break
        loss = train_step(data, label)
        loss.asnumpy()  # wait for the step here, so the time below is log()'s own
        t2 = time.perf_counter()
        curves.log(loss=loss)
        t3 = time.perf_counter()
        inside += t3 - t2
        steps += 1
    return inside, steps


def stop_latency(train_step, train, foreground: bool) -> tuple[float, float]:
    """Seconds from the Stop request to the loop's end, and the median step time then."""
    curves = LiveCurves(display=False)
    asked = [0.0]
    times = []

    def request() -> None:
        asked[0] = time.perf_counter()
        if foreground:
            os.kill(os.getpid(), signal.SIGINT)
        else:
            curves.stop()

    timer = threading.Timer(1.0, request)
    timer.start()
    with curves:
        for _ in range(100):
            for data, label in curves.steps(train().create_tuple_iterator()):
                t = time.perf_counter()
                curves.log(loss=train_step(data, label))
                times.append(time.perf_counter() - t)
            if curves.stop_requested:
                break
    return time.perf_counter() - asked[0], statistics.median(times)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    _, train_step, train = setup()
    bare_epoch(train_step, train)  # compile
    curves = LiveCurves(display=False)
    times = {"bare loop": [], "LiveCurves.steps + log": []}
    inside_total, steps_total = 0.0, 0
    for i in range(repeats):
        order = ["bare loop", "LiveCurves.steps + log"]
        for name in order if i % 2 == 0 else order[::-1]:
            if name == "bare loop":
                seconds, _, _ = bare_epoch(train_step, train)
            else:
                seconds, inside, steps = logged_epoch(train_step, train, curves)
                inside_total += inside
                steps_total += steps
            times[name].append(seconds)
    curves.finish()
    bare = statistics.median(times["bare loop"])
    logged = statistics.median(times["LiveCurves.steps + log"])
    steps = steps_total // repeats
    print(f"demo transfer task: {repeats} measurements of {steps} steps ({EPOCHS} epochs) each, interleaved")
    print(f"  bare loop                 median run {bare * 1000:7.1f} ms  ({bare / steps * 1e3:.1f} ms/step)")
    print(f"  LiveCurves.steps + log    median run {logged * 1000:7.1f} ms  ratio {logged / bare:.3f}")
    per_step = inside_total / steps_total
    share = per_step / (bare / steps) * 100
    print(f"  time inside curves.log    {per_step * 1e6:.0f} us/step = {share:.2f} % of a step (goal <= 1 %)")
    for foreground in (True, False):
        latency, step = stop_latency(train_step, train, foreground)
        how = "foreground: kernel interrupt (the chart's Stop on a busy kernel)" if foreground else \
            "background: curves.stop() from another thread"
        print(f"  Stop -> loop ended        {latency * 1000:6.0f} ms  (step {step * 1000:.0f} ms)  {how}")


if __name__ == "__main__":
    main()
