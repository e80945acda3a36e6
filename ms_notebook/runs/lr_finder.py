"""Learning-rate finder (Smith 2015, as fastai's ``lr_find``): train a few dozen steps while the rate grows
exponentially, stop when the loss diverges, put everything back, and suggest a rate.

The ramp writes the optimizer's learning-rate parameter(s) in place before each step (``ops.assign``: the
compiled GRAPH step and the cached PYNATIVE one both read it; see :mod:`ms_notebook.runs.inplace`). With
parameter groups (discriminative rates) every group is scaled together, keeping their ratios; the rate
reported is the top group's. A learning-rate schedule (a ``dynamic_lr`` optimizer) cannot be ramped and is
refused. Everything the ramp changed (weights, BatchNorm statistics, moments, step, rates) is written back
in place afterwards.

The suggestion follows fastai's "valley" rule (about halfway down the longest stretch where the smoothed loss
keeps falling); ``lr_min`` is the rate at the minimum divided by ten, fastai's other rule of thumb.

Both the stop and the suggestion are judged against the loss's own noise, so a trained network (loss near
zero, batch to batch noise larger than the loss) gives an answer rather than "diverged" after two steps:
the ramp runs at least ``MIN_STEPS`` steps, it has diverged only when the smoothed loss is both ``diverge``
times its minimum and above it by several times the spread of the raw losses around the smoothed curve,
and a curve that never falls by more than that spread (nothing left to learn) is called flat, its
suggestion a tenth of the last rate where the loss was still steady.
"""

from __future__ import annotations

import io
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mindspore.train import Callback

from .inplace import assign
from .recorder import scalar

_render_lock = threading.Lock()  # matplotlib is not thread-safe: the Dashboard may draw from two threads


MIN_STEPS = 10  # no stop on divergence, and no suggestion, from fewer steps than this
NOISE = 4.0  # a rise counts once it is this many times the spread of the raw losses around the smoothed curve


class LRFinderError(ValueError):
    """The optimizer's learning rate cannot be ramped (a schedule), or the finder got no usable step."""


def ramp(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """``steps`` rates from ``start_lr`` to ``end_lr``, evenly spaced on a log scale."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if steps < 2:
        raise ValueError(f"the ramp needs at least 2 steps, got {steps}")
    ratio = (end_lr / start_lr) ** (1.0 / (steps - 1))
    return [start_lr * ratio**i for i in range(steps)]


def lr_parameters(optimizer: Any) -> list[Any]:
    """The optimizer's distinct learning-rate Parameters (one, or one per group)."""
    import mindspore

    if getattr(optimizer, "dynamic_lr", False):
        raise LRFinderError("the optimizer follows a learning-rate schedule: build it with a fixed rate")
    lr = getattr(optimizer, "learning_rate", None)
    params = [lr] if isinstance(lr, mindspore.Parameter) else list(lr or ())
    unique = list({id(p): p for p in params}.values())
    if not unique or not all(isinstance(p, mindspore.Parameter) for p in unique):
        raise LRFinderError(f"cannot find the learning rate of {type(optimizer).__name__}")
    return unique


@dataclass
class LRFinderResult:
    """The finder's curve (``lrs``, ``losses``, ``smoothed``), its ``suggestion`` and what it cost."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    lr_min: float | None
    stopped: str  # "diverged", "non-finite loss", "end of ramp", "stopped"
    steps: int
    seconds: float
    planned_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed": self.smoothed})

    def summary(self) -> str:
        found = f"suggested learning rate {self.suggestion:.2g}" if self.suggestion else "no suggestion"
        if self.suggestion is None and self.steps < MIN_STEPS:
            found += f" (fewer than {MIN_STEPS} steps)"
        lr_min = f" (minimum / 10: {self.lr_min:.2g})" if self.lr_min else ""
        flat = ("; the loss stays flat within its noise (little left to learn): a tenth of the last steady "
                "rate" if self.extra.get("flat") else "")
        return (f"{found}{lr_min}; {self.steps} of {self.planned_steps} steps in {self.seconds:.1f} s, "
                f"{self.stopped}{flat}; weights and optimizer state restored")

    def plot(self, ax: Any = None) -> Any:
        """Loss (raw and smoothed) against the learning rate on a log axis, the suggestion marked."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(7.2, 3.2), dpi=100)
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed")
        if self.suggestion:
            index = int(np.argmin(np.abs(np.log(self.lrs) - math.log(self.suggestion))))
            ax.plot([self.suggestion], [self.smoothed[index]], "o", color="C3",
                    label=f"suggestion {self.suggestion:.2g}")
        from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

        ax.set_xscale("log")
        # plain "1e-04" labels: the default log labels go through mathtext, which two threads can break
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:.0e}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:
            # y range: from the minimum to the loss at the start (the divergence above it is cut off), never
            # narrower than the raw losses' spread or 5% of the level, so noise near zero reads as noise
            low, high = min(finite), max([*finite[: max(1, len(finite) // 2)], finite[0]])
            pad = max(high - low, spread(self.losses, self.smoothed) * 2, 0.05 * abs(high), 1e-12)
            ax.set_ylim(max(low - 0.1 * pad, 0.0) if low >= 0 else low - 0.1 * pad, high + 0.3 * pad)
        # plain labels ("0.0052", never an offset such as "1e-10 + 5.18e-3")
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:.3g}"))
        # the legend outside the data, on the right: the curve can be anywhere
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_title("learning-rate finder", fontsize=10)
        return ax

    def figure_png(self) -> bytes:
        """The plot as PNG bytes at twice the screen density (object API, Agg canvas: any thread)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        with _render_lock:
            fig = Figure(figsize=(7.2, 3.2), dpi=200)
            FigureCanvasAgg(fig)
            self.plot(fig.add_subplot(1, 1, 1))
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
        from .plotting import compact_png

        return compact_png(buffer.getvalue())

    def _repr_png_(self) -> bytes:
        return self.figure_png()

    def __repr__(self) -> str:
        return f"LRFinderResult({self.summary()})"


def spread(losses: list[float], smoothed: list[float]) -> float:
    """How far the raw losses stray from the smoothed curve: the median absolute gap (batch noise; robust
    to the few steps where the loss explodes)."""
    pairs = zip(losses, smoothed, strict=False)
    gaps = [abs(a - b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    return float(np.median(gaps)) if gaps else 0.0


def diverged(losses: list[float], smoothed: list[float], factor: float = 4.0,
             min_steps: int = MIN_STEPS) -> bool:
    """Whether the ramp should stop: at least ``min_steps`` steps, and the last smoothed loss above
    ``factor`` times the lowest one and above it by ``NOISE`` times the raw losses' spread (so batch noise
    on a loss near zero is not taken for divergence)."""
    finite = [v for v in smoothed if math.isfinite(v)]
    if len(smoothed) < min_steps or not finite or not math.isfinite(smoothed[-1]):
        return False
    best, last = min(finite), smoothed[-1]
    return last > factor * best and last - best > NOISE * spread(losses, smoothed)


def suggest(lrs: list[float], smoothed: list[float], losses: list[float] | None = None,
            min_steps: int = MIN_STEPS) -> tuple[float | None, float | None]:
    """(valley rate, minimum rate / 10) of a smoothed loss curve; None where there is none (fewer than
    ``min_steps`` finite points).

    The valley rule is fastai's default: the longest stretch over which the loss keeps falling (the longest
    decreasing subsequence), and the rate about halfway down it. It ignores the noisy flat start that makes
    the steepest single step a poor guess on short ramps. Given the raw ``losses``, a curve whose valley
    falls by less than their spread is flat (see :func:`flat_suggestion`).
    """
    return _suggest(lrs, smoothed, losses, min_steps)[:2]


def _suggest(lrs: list[float], smoothed: list[float], losses: list[float] | None,
             min_steps: int) -> tuple[float | None, float | None, bool]:
    """``suggest``'s answer and whether the curve was flat."""
    points = [(lr, loss) for lr, loss in zip(lrs, smoothed, strict=True) if math.isfinite(loss)]
    if len(points) < max(2, min_steps):
        return None, None, False
    values = [loss for _, loss in points]
    lr_min = points[int(np.argmin(values))][0] / 10.0
    n = len(values)
    run = [1] * n  # length of the longest decreasing subsequence ending at i
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if values[i] < values[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[i] > run[best_end]:
            best_end = i
            best_start = best_end - run[best_end]
    if losses is not None:
        noise = spread(losses, smoothed)
        if max(values[: best_end + 1]) - min(values) <= 3 * noise:  # nothing falls beyond the noise
            return flat_suggestion([lr for lr, _ in points], values, noise), lr_min, True
    third = (best_end - best_start) / 3
    index = min(n - 1, max(0, best_start + int(third) + int(third / 2)))
    return points[index][0], lr_min, False


def flat_suggestion(lrs: list[float], smoothed: list[float], noise: float) -> float:
    """A tenth of the last rate at which a flat smoothed loss was still within ``NOISE`` spreads of its
    minimum (the highest rate tried when it never left it)."""
    floor = min(smoothed)
    steady = lrs[0]
    for lr, loss in zip(lrs, smoothed, strict=True):
        if loss - floor > NOISE * noise and loss > 2 * floor:
            break
        steady = lr
    return steady / 10.0


class LRRamp(Callback):
    """Training-thread hooks: set the ramp's rate before each step, record the loss, stop on divergence."""

    def __init__(self, optimizer: Any, rates: list[float], diverge: float = 4.0, beta: float = 0.9,
                 should_stop: Any = None) -> None:
        super().__init__()
        self.params = lr_parameters(optimizer)
        values = [float(p.asnumpy().reshape(-1)[0]) for p in self.params]
        top = max(values)
        self.ratios = [v / top if top > 0 else 1.0 for v in values]
        self.rates, self.diverge, self.beta = rates, diverge, beta
        self.should_stop = should_stop or (lambda: False)
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.stopped = "end of ramp"
        self._avg = 0.0
        self._best = math.inf

    def _set(self, rate: float) -> None:
        for param, ratio in zip(self.params, self.ratios, strict=True):
            assign(param, rate * ratio)

    def on_train_step_begin(self, run_context: Any) -> None:
        self._set(self.rates[min(len(self.lrs), len(self.rates) - 1)])

    def on_train_step_end(self, run_context: Any) -> None:
        loss = scalar(run_context.original_args().net_outputs)
        n = len(self.lrs) + 1
        self.lrs.append(self.rates[n - 1])
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.smoothed.append(math.nan)
            self.stopped = "non-finite loss"
            run_context.request_stop()
            return
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta**n)
        self.smoothed.append(smooth)
        self._best = min(self._best, smooth)
        if diverged(self.losses, self.smoothed, self.diverge):
            self.stopped = "diverged"
            run_context.request_stop()
        elif n >= len(self.rates):
            self.stopped = "end of ramp"
            run_context.request_stop()
        elif self.should_stop():
            self.stopped = "stopped"
            run_context.request_stop()


class Snapshot:
    """Values of every network and optimizer parameter (moments, step, rates), to put back after the ramp."""

    def __init__(self, net: Any, optimizer: Any) -> None:
        params = {id(p): p for p in net.get_parameters()}
        params.update({id(p): p for _, p in optimizer.parameters_and_names()})
        self.values = [(p, p.data.copy()) for p in params.values()]

    def restore(self) -> None:
        for param, value in self.values:
            assign(param, value)


def find_lr(model: Any, net: Any, optimizer: Any, dataset_factory: Any, start_lr: float = 1e-7,
            end_lr: float = 10.0, steps: int = 60, diverge: float = 4.0, should_stop: Any = None,
            beta: float = 0.9) -> LRFinderResult:
    """Ramp the rate over ``steps`` training steps of ``model`` (built over ``net`` and ``optimizer``).

    ``beta`` smooths the loss (bias-corrected EMA). fastai uses 0.98 over 100 steps; over a few dozen steps
    that lags so far behind that the loss has exploded before the smoothed curve turns, so 0.9 here.
    """
    rates = ramp(start_lr, end_lr, steps)
    callback = LRRamp(optimizer, rates, diverge=diverge, beta=beta, should_stop=should_stop)
    snapshot = Snapshot(net, optimizer)
    started = time.perf_counter()
    try:
        dataset = dataset_factory()
        per_epoch = int(dataset.get_dataset_size() or 0) or steps
        epochs = math.ceil(steps / per_epoch)
        model.train(epochs, dataset, callbacks=[callback], dataset_sink_mode=False)
    finally:
        snapshot.restore()
    seconds = time.perf_counter() - started
    if not callback.lrs:
        raise LRFinderError("the learning-rate finder ran no training step (empty training data?)")
    suggestion, lr_min, flat = _suggest(callback.lrs, callback.smoothed, callback.losses, MIN_STEPS)
    return LRFinderResult(callback.lrs, callback.losses, callback.smoothed, suggestion, lr_min,
                          callback.stopped, len(callback.lrs), seconds, planned_steps=steps,
                          extra={"flat": flat})
