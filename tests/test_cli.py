"""``python -m ms_notebook inspect``: the tree with totals, as text or JSON; one-line errors for bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ms_notebook", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    net = nn.SequentialCell(nn.Dense(4, 8), nn.ReLU(), nn.Dense(8, 2))
    opt = nn.Momentum(net.trainable_params(), 0.1, 0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), opt)
    step(ms.Tensor(np.ones((2, 4), np.float32)), ms.Tensor(np.zeros((2, 2), np.float32)))
    path = tmp_path_factory.mktemp("cli") / "trained.ckpt"
    ms.save_checkpoint(step, str(path), append_dict={"epoch_num": 5}, crc_check=True)
    return path


def test_inspect_prints_the_tree_with_totals(trained_ckpt):
    proc = _cli("inspect", str(trained_ckpt))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "trained.ckpt  (ckpt, 12 tensors, 58 parameters" in out
    assert "weights: 4 tensors, 58 values" in out
    assert "optimizer:" in out and "extra: 1 tensors" in out
    assert "moments/  4 tensors, 58 params" in out
    assert "    weight  8x4 Float32  128 B" in out  # 0.weight under 0/ at full depth


def test_inspect_depth_and_group_filter(trained_ckpt):
    proc = _cli("inspect", str(trained_ckpt), "--depth", "1", "--group", "weights")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "0/  2 tensors, 40 params, 160 B" in lines
    assert not any(line.startswith("moments") for line in lines)
    assert not any(line.startswith("  ") and "Float32" in line for line in lines)


def test_inspect_json_is_the_tree_dict(trained_ckpt):
    proc = _cli("inspect", str(trained_ckpt), "--json", "--verify")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["format"] == "ckpt" and out["num_params"] == 58
    assert out["tree"]["tensors"] == 12
    assert [c["name"] for c in out["tree"]["children"]][:2] == ["0", "2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), (b"", "empty"), (b"garbage bytes here", "not a MindSpore checkpoint")],
)
def test_inspect_reports_bad_files_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    proc = _cli("inspect", str(path))
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
