"""What launching a data-parallel job from the notebook costs: 2 workers under msrun, CPU, in one run.

Prints
- launch-to-first-step: from ``launch()`` to rank 0's first finished training step (its record's own time),
  and when the DistributedRun saw it;
- per-step overhead of the reporting callback (``LiveCurves()`` inside the job: rank 0's metrics file, the
  stop check on every rank) against no callback, measured inside one job: segments of the same steps with and
  without it, side by side in a rotating order (median step time of each, median of the pairs' ratios); plus
  the time spent inside the callback itself, which the machine's noise does not blur. Target: <= 2 %;
- Stop to no process left: from ``stop()`` until ``wait()`` returns (every rank stopped after one common step
  and saved its checkpoint; no process of the job is left, checked);
- a failing rank to no process left: from the exception in rank 1 until ``wait()`` returns "failed".

Usage: ``GLOG_v=3 python benchmarks/bench_launch.py [segments]`` (default 12 segments of each kind).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("GLOG_v", "3")

from ms_notebook import TransferPlan, launch
from ms_notebook.demo import DigitsNet, pretrained_checkpoint
from ms_notebook.runs.history import read_jsonl
from ms_notebook.runs.launch import processes_with_run_dir

OVERHEAD_JOB = textwrap.dedent("""
    import json, os, sys, time
    import mindspore as ms
    from mindspore import nn
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.train import Model
    from ms_notebook import LiveCurves, demo

    segments, steps = int(sys.argv[1]), int(sys.argv[2])
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    rank, size = get_rank(), get_group_size()
    ms.set_seed(0)
    net = demo.DigitsNet(10, seed=0)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9))

    def data():  # `steps` batches of this rank's shard
        return demo.dataset("pretrain", "train", batch_size=16, num_shards=size, shard_id=rank).take(steps)

    inside = [0.0]

    class TimedCurves(LiveCurves):
        def on_train_step_end(self, run_context):
            started = time.perf_counter()
            super().on_train_step_end(run_context)
            inside[0] += time.perf_counter() - started

    curves = TimedCurves()
    model.train(1, data(), dataset_sink_mode=False)  # compile the graph first
    times = {"none": [], "LiveCurves": []}
    for i in range(segments):
        order = ["none", "LiveCurves"] if i % 2 == 0 else ["LiveCurves", "none"]
        for kind in order:
            callbacks = [curves] if kind == "LiveCurves" else []
            dataset = data()
            started = time.perf_counter()
            model.train(1, dataset, callbacks=callbacks, dataset_sink_mode=False)
            times[kind].append((time.perf_counter() - started) / steps)
    result = {"times": times, "inside_s": inside[0]}
    run_dir = os.environ["MS_NOTEBOOK_RUN_DIR"]
    with open(os.path.join(run_dir, f"bench_rank_{rank}.json"), "w") as f:
        json.dump(result, f)
""")

FAILING_JOB = textwrap.dedent("""
    import os, time
    import numpy as np
    import mindspore as ms
    from mindspore import nn
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.train import Callback, Model
    import mindspore.dataset as ds
    from ms_notebook import LiveCurves

    ms.set_device("CPU")
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    rank, size = get_rank(), get_group_size()
    x = np.random.default_rng(0).random((512, 16), dtype=np.float32)
    y = (x.sum(axis=1) > 8).astype(np.int32)
    data = ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False, num_shards=size, shard_id=rank).batch(16)
    net = nn.Dense(16, 2)
    model = Model(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                  nn.Momentum(net.trainable_params(), 0.01, 0.9))

    class Raise(Callback):
        def on_train_step_end(self, run_context):
            if rank == 1 and run_context.original_args().cur_step_num == 20:
                with open(os.path.join(os.environ["MS_NOTEBOOK_RUN_DIR"], "raised_at"), "w") as f:
                    f.write(repr(time.time()))
                raise ValueError("rank 1 fails on purpose")

    model.train(100, data, callbacks=[LiveCurves(), Raise()], dataset_sink_mode=False)
""")


def first_step_time(metrics: Path) -> float:
    records = read_jsonl(metrics)
    begin = next(r for r in records if r["type"] == "begin")
    first = next(r for r in records if r["type"] == "step")
    return float(begin["time"]) + float(first["wall_time"])


def main(segments: int = 12) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    plan = TransferPlan(DigitsNet(5, seed=1), pretrained_checkpoint()).train_last(2)
    script = plan.to_script(work / "train.py", epochs=100_000)

    # 1 and 3: launch the plan's script, wait for training, stop it
    launched = time.time()
    run = launch(script, workers=2, run_dir=work / "stop-run")
    while run.state != "running" and not run.done:
        time.sleep(0.05)
    seen = time.time()
    while run.progress()["step"] < 20 and not run.done:
        time.sleep(0.1)
    first = first_step_time(run.dir.metrics)
    stop_at = time.perf_counter()
    run.stop()
    state = run.wait(180)
    stop_to_clean = time.perf_counter() - stop_at
    left = processes_with_run_dir(run.run_dir)
    print(f"launch to first step:       {first - launched:6.1f} s  (the notebook saw it after "
          f"{seen - launched:.1f} s; {run.workers} workers, MindSpore imports and init() dominate)")
    print(f"Stop to no process left:    {stop_to_clean:6.1f} s  (state {state!r}, stopped at step "
          f"{run.progress()['step']}, checkpoints of ranks {sorted(run.checkpoints())}, "
          f"processes left: {len(left)})")

    # 2: reporting overhead inside one job
    job = work / "overhead.py"
    job.write_text(OVERHEAD_JOB)
    steps = 20
    run = launch(job, segments, steps, workers=2, run_dir=work / "overhead-run")
    if run.wait(900) != "finished":
        raise SystemExit(f"the overhead job did not finish: {run.error}\n{run.log(0)[-3000:]}")
    result = json.loads((run.run_dir / "bench_rank_0.json").read_text())
    times = result["times"]
    none, live = statistics.median(times["none"]), statistics.median(times["LiveCurves"])
    pairs = statistics.median(a / b for a, b in zip(times["LiveCurves"], times["none"], strict=True))
    inside = result["inside_s"] / (segments * steps)
    print(f"step time, no callback:     {none * 1e3:6.2f} ms  (median of {segments} segments of {steps} "
          "steps, rank 0, DigitsNet, batch 16 per rank, GRAPH)")
    print(f"step time, LiveCurves():    {live * 1e3:6.2f} ms  -> median side-by-side ratio "
          f"{pairs:.3f} ({(pairs - 1) * 100:+.1f} %; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    print(f"time inside the callback:   {inside * 1e6:6.0f} us per step = {inside / none * 100:.2f} % "
          "of a step (target <= 2 %)")

    # 4: a failing rank
    job = work / "failing.py"
    job.write_text(FAILING_JOB)
    run = launch(job, workers=2, run_dir=work / "failing-run", node_timeout_s=60)
    state = run.wait(300)
    ended = time.time()
    raised = float((run.run_dir / "raised_at").read_text())
    print(f"failing rank to no process: {ended - raised:6.1f} s  (state {state!r}: {run.error}; "
          f"msrun alone waits for the scheduler's timeout, ~30 s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
