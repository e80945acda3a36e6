"""fastai's tools on the demo task (DigitsNet pretrained on upright digits -> digits 5–9 rotated, 5 classes,
20 labelled images per class), GRAPH mode, CPU, fixed seeds.

1. ``Runner.find_lr``: steps it ran, seconds, and that cost next to one training epoch (measured in the same
   run, after compilation).
2. Accuracy on the test split after ``EPOCHS`` epochs, side by side, for each seed and on average:
   - frozen backbone (plain freezing: only the new head trains), lr 0.02
   - all unfrozen at one rate, lr 0.02
   - all unfrozen with discriminative rates ``slice(0.02 / 100, 0.02)`` and ``slice(0.02 / 10, 0.02)``
   - gradual unfreezing ``fine_tune(EPOCHS - 1, freeze_epochs=1, lr=0.04)`` (one head epoch at 0.04, then
     everything at 0.0002 ... 0.02, as fastai does)
   Every variant sees the same seeds (head initialisation and batch order), the same number of epochs and so
   the same number of steps.

Usage: ``GLOG_v=3 python benchmarks/bench_fastai.py [epochs] [seeds]`` (defaults 10 and 3).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
from mindspore import nn

from ms_notebook import TransferPlan
from ms_notebook.demo import DigitsNet, datasets, pretrained_checkpoint
from ms_notebook.runs.curves import LiveCurves
from ms_notebook.runs.runner import Runner

LR = 0.02


def momentum(params):
    return nn.Momentum(params, learning_rate=LR, momentum=0.9)


def runner_for(seed: int, prepare) -> Runner:
    """A Runner over a fresh DigitsNet(5) whose plan ``prepare`` shapes, applied with Momentum."""
    ms.set_seed(seed)
    net = DigitsNet(5, seed=seed)
    plan = TransferPlan(net, pretrained_checkpoint())
    lr = prepare(plan)
    report = plan.apply(optimizer=momentum, lr=lr)
    train, evaluate = datasets("transfer", batch_size=16, seed=seed)
    return Runner(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean"), report.optimizer, train, evaluate,
                  plan=plan, optimizer_factory=momentum, curves=LiveCurves(display=False), mode="graph")


VARIANTS = {
    "frozen backbone": lambda plan: plan.freeze_backbone() and None,
    "all unfrozen": lambda plan: None,
    "discriminative /100": lambda plan: slice(LR / 100, LR),
    "discriminative /10": lambda plan: slice(LR / 10, LR),
    "gradual (fine_tune)": lambda plan: None,
}


def accuracy_after(name: str, seed: int, epochs: int) -> float:
    runner = runner_for(seed, VARIANTS[name])
    if name.startswith("gradual"):
        runner.fine_tune(epochs - 1, freeze_epochs=1, lr=2 * LR)
    else:
        runner.fit(epochs)
    return float(runner.curves.epochs["eval_accuracy"].iloc[-1])


def lr_finder_cost() -> None:
    runner = runner_for(0, lambda plan: None)  # a new head, as a user would run it before training
    first = runner.find_lr(steps=50)  # compiles the training step
    result = runner.find_lr(steps=50)  # the same experiment again (everything was restored): steps only
    steps_per_epoch = int(runner.train_data().get_dataset_size())
    started = time.perf_counter()
    runner.fit(1)
    epoch_s = time.perf_counter() - started
    print("1. find_lr (GRAPH mode)")
    print(f"   ramp 1e-06 -> 10 over at most 50 steps: ran {result.steps} steps ({result.stopped}) "
          f"in {result.seconds:.2f} s ({first.seconds:.2f} s the first time, compiling the step); "
          f"same curve both times: {first.losses == result.losses}")
    print(f"   one training epoch: {steps_per_epoch} steps + evaluation in {epoch_s:.2f} s")
    print(f"   find_lr = {result.steps / steps_per_epoch:.1f} epochs of steps, "
          f"{result.seconds / epoch_s:.2f}x the time of one epoch with its evaluation")
    print(f"   suggestion {result.suggestion:.3g} (minimum / 10: {result.lr_min:.3g})")


def main(epochs: int = 10, seeds: int = 3) -> None:
    pretrained_checkpoint()
    lr_finder_cost()
    steps = epochs * int(datasets("transfer", batch_size=16)[0]().get_dataset_size())
    print(f"\n2. test accuracy after {epochs} epochs ({steps} steps), seeds 0..{seeds - 1}")
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for seed in range(seeds):
        for name in VARIANTS:  # interleaved: the machine's load hits every variant alike
            results[name].append(accuracy_after(name, seed, epochs))
    width = max(len(n) for n in VARIANTS)
    header = "   " + "variant".ljust(width) + "  " + "  ".join(f"seed {s}" for s in range(seeds)) + "    mean"
    print(header)
    base = statistics.mean(results["frozen backbone"])
    for name, values in results.items():
        cells = "  ".join(f"{v:6.1%}" for v in values)
        mean = statistics.mean(values)
        print(f"   {name.ljust(width)}  {cells}  {mean:6.1%}  ({100 * (mean - base):+.1f} points vs frozen)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
