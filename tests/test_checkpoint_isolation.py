"""The index reads checkpoints without MindSpore (or protobuf): in a process where importing them fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

ROOT = Path(__file__).resolve().parent.parent

BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"mindspore", "google"}:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(code: str, *, block: bool) -> subprocess.CompletedProcess:
    script = (BLOCKER if block else "") + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iso")
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    params = [{"name": "net.weight", "data": ms.Tensor(weight)},
              {"name": "net.bias", "data": ms.Tensor(np.ones(3, np.float16))}]  # fmt: skip
    for fmt in ("ckpt", "safetensors"):
        ms.save_checkpoint(params, str(folder / f"m.{fmt}"), append_dict={"epoch_num": 4}, format=fmt)
    return folder


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_reading_works_when_mindspore_cannot_be_imported(saved, fmt):
    code = f"""
import json
from ms_notebook import open_checkpoint
ck = open_checkpoint({str(saved / f"m.{fmt}")!r})
w = ck["net.weight"]
print(json.dumps({{"names": sorted(ck), "sum": float(w.sum()), "shape": list(w.shape),
                   "mean": ck.stats("net.weight").mean, "tree": ck.tree().to_dict()["tensors"],
                   "blocked": "mindspore" not in sys.modules}}))
try:
    import mindspore
except ImportError:
    print("mindspore import fails")
"""
    proc = _run(code, block=True)
    assert proc.returncode == 0, proc.stderr
    out_line, blocked_line = proc.stdout.strip().splitlines()
    out = json.loads(out_line)
    assert out["names"] == ["epoch_num", "net.bias", "net.weight"]
    assert out["sum"] == 66.0 and out["shape"] == [3, 4] and out["mean"] == 5.5 and out["tree"] == 3
    assert blocked_line == "mindspore import fails"


def test_cli_works_when_mindspore_cannot_be_imported(saved):
    code = f"""
import sys
from ms_notebook.__main__ import main
sys.exit(main(["inspect", {str(saved / "m.ckpt")!r}]))
"""
    proc = _run(code, block=True)
    assert proc.returncode == 0, proc.stderr
    assert "net/  2 tensors" in proc.stdout


def test_import_ms_notebook_and_opening_a_checkpoint_do_not_import_mindspore(saved):
    code = f"""
import sys, ms_notebook
ms_notebook.open_checkpoint({str(saved / "m.ckpt")!r})["net.weight"]
print(sorted(m for m in sys.modules if m.split(".")[0] in ("mindspore", "google")))
"""
    proc = _run(code, block=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
