"""A real 2-worker data-parallel run under ``msrun`` (CPU, mccl): its rank_0/, rank_1/ open as one checkpoint
whose replicas are shown once and compared byte for byte (~45 s: imports and init() dominate)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from ms_notebook import open_checkpoint

from .servers import free_port

pytestmark = pytest.mark.slow

WORKER = """
import os, sys
os.environ.setdefault("GLOG_v", "3")
import numpy as np
import mindspore as ms
from mindspore import nn
from mindspore.communication import get_group_size, get_rank, init

out = sys.argv[1]
ms.set_device("CPU")
init()
ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
ms.set_seed(1)
rank = get_rank()
net = nn.SequentialCell(nn.Dense(8, 16), nn.ReLU(), nn.Dense(16, 4))
opt = nn.Momentum(net.trainable_params(), 0.1, 0.9)
loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
rng = np.random.default_rng(rank)  # each worker its own shard of data
for i in range(3):
    x = rng.standard_normal((16, 8)).astype(np.float32)
    y = rng.integers(0, 4, 16).astype(np.int32)
    step(ms.Tensor(x), ms.Tensor(y))
os.makedirs(os.path.join(out, f"rank_{rank}"), exist_ok=True)
ms.save_checkpoint(step, os.path.join(out, f"rank_{rank}", "net-1_3.ckpt"))
print("saved", rank, get_group_size())
"""


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("msrun")
    script = base / "worker.py"
    script.write_text(WORKER)
    out = base / "ckpt"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "GLOG_v": "3", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [
        str(bin_dir / "msrun"),
        "--worker_num=2",
        "--local_worker_num=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        f"--log_dir={base / 'logs'}",
        "--join=True",
        str(script),
        str(out),
    ]
    proc = subprocess.run(command, cwd=base, env=env, capture_output=True, text=True, timeout=300)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((base / "logs").glob("*.log")))
    assert proc.returncode == 0 and (out / "rank_1" / "net-1_3.ckpt").exists(), (
        proc.stdout + proc.stderr + logs
    )
    return out


def test_a_data_parallel_run_is_one_checkpoint_with_identical_replicas(dp_run):
    ck = open_checkpoint(dp_run)
    assert ck.kind == "ranks" and ck.strategy == () and sorted(ck.rank_files) == [0, 1]
    assert ck.replica_ranks == [1]
    assert any("data parallel" in note for note in ck.notes)
    rank0 = ms.load_checkpoint(str(dp_run / "rank_0" / "net-1_3.ckpt"))
    assert ck.keys() == list(rank0)
    for name, param in rank0.items():
        assert [s.ranks for s in ck.slices(name)] == [[0, 1]]
        np.testing.assert_array_equal(ck[name], param.asnumpy())
    # gradients were averaged across the workers, so both saved the same weights and moments
    check = ck.check_replicas()
    assert check.identical and check.compared == len(rank0), check.differing
    assert "byte-identical" in ck.notes[-1]
