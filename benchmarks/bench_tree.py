"""Benchmark: build the browser's tree model (Python side, incl. the widget's visible rows) for 10,000
tensors.

Writes a real 10,000-tensor .ckpt (an LLM-shard-like layout: 400 layers × 25 tensors, small shapes) with
mindspore.save_checkpoint into a temp folder, opens it with the index, then times (median of several runs):
building the TreeModel, the first visible rows (collapsed), a filter, and fully expanded rows; and the whole
TreeView widget construction. Target: model + first rows < 200 ms.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_v", "3")

LAYERS, PER_LAYER = 400, 25
RUNS = 7


def write_checkpoint(path: Path) -> None:
    import mindspore as ms
    import numpy as np

    names = [f"q_proj.{k}" for k in ("weight", "bias")] + [f"k_proj.{k}" for k in ("weight", "bias")]
    names += [f"v_proj.{k}" for k in ("weight", "bias")] + [f"o_proj.{k}" for k in ("weight", "bias")]
    names += ["mlp.gate.weight", "mlp.up.weight", "mlp.down.weight", "norm1.gamma", "norm1.beta"]
    names += ["norm2.gamma", "norm2.beta", "rotary.inv_freq"] + [
        f"lora.{i}.{k}" for i in range(3) for k in "AB"
    ]
    names += ["scale", "bias_gate", "ls.gamma"]
    assert len(names) == PER_LAYER
    small = ms.Tensor(np.ones((4, 4), np.float32))
    params = [
        {"name": f"model.decoder.layers.{layer}.{n}", "data": small} for layer in range(LAYERS) for n in names
    ]
    ms.save_checkpoint(params, str(path))


def median_ms(fn, runs: int = RUNS, clock=time.perf_counter) -> float:
    times = []
    for _ in range(runs):
        t = clock()
        fn()
        times.append((clock() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    from ms_notebook.checkpoint import open_checkpoint
    from ms_notebook.widgets.tree import TreeView
    from ms_notebook.widgets.tree_model import TreeModel

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.ckpt"
        write_checkpoint(path)
        ck = open_checkpoint(path)
        entries = ck.entries
        print(f"checkpoint: {len(entries):,} tensors, {path.stat().st_size / 1e6:.1f} MB")

        build = median_ms(lambda: TreeModel(entries))
        first = median_ms(lambda: TreeModel(entries).rows())
        # CPU time of this process: steadier than wall time when other jobs share the cores
        first_cpu = median_ms(lambda: TreeModel(entries).rows(), clock=time.process_time)
        model = TreeModel(entries)
        rows_only = median_ms(model.rows)

        def filtered():
            m = TreeModel(entries)
            m.set_filter("layers.1*.mlp.*")
            return m.rows()

        filt = median_ms(filtered)
        model.expand_all()
        n_expanded = len(model.rows())
        expanded = median_ms(model.rows)
        widget = median_ms(lambda: TreeView(TreeModel(entries)).close(), runs=3)

    print(f"TreeModel build                      {build:7.1f} ms")
    print(
        f"build + first visible rows           {first:7.1f} ms   "
        f"(target < 200 ms: {'OK' if first < 200 else 'MISSED'})"
    )
    print(f"build + first visible rows, CPU time {first_cpu:7.1f} ms")
    print(f"visible rows again (collapsed)       {rows_only:7.1f} ms")
    print(f"build + glob filter + rows           {filt:7.1f} ms")
    print(f"all expanded: {n_expanded:,} rows            {expanded:7.1f} ms")
    print(f"TreeView widget (model + rows + traits) {widget:5.1f} ms")
    print(f"ratio first-rows / target            {first / 200:7.2f}")


if __name__ == "__main__":
    main()
