"""Benchmark: a run's checkpoints over time, and per-layer diagnostics, each beside its baseline.

1. A 30-checkpoint series of the demo (DigitsNet trained with ``Model.train`` + ``ModelCheckpoint``):
   ``open_series(folder)`` + ``change()`` (every weight, change from the previous and the first checkpoint),
   caches cleared, against ``mindspore.load_checkpoint`` of every file and the same table in NumPy. Then the
   second look (cached) and ``first_nonfinite()`` over every tensor.
2. Diagnostics of a ResNet-50 checkpoint (mindcv's ``create_model('resnet50')``, 102 MB, 54 layers):
   ``open_checkpoint(path).diagnostics()`` against WeightWatcher 0.7.7's ``analyze()`` on the same weights
   (its flat-file reader: one ``.npy`` per layer, written beforehand, not timed), each in a fresh process:
   seconds and peak RSS above the process's RSS after imports; and how far the two alphas are apart.
3. One 8192 × 1024 float32 weight: peak memory of its diagnostics against the tensor's own size.

Best of several runs, the two sides alternating (median printed too), files in the page cache.

    GLOG_v=3 .venv/bin/python benchmarks/bench_series.py [--dir /tmp] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ms_notebook import open_series  # noqa: E402
from ms_notebook.checkpoint import series as series_mod  # noqa: E402


def _clear() -> None:
    series_mod.FIGURES.clear()
    series_mod.CHANGES.clear()
    series_mod.HISTOGRAMS.clear()


def _ours(folder: Path) -> float:
    _clear()
    t = time.perf_counter()
    open_series(folder).change()
    return time.perf_counter() - t


def _baseline(folder: Path) -> float:
    import mindspore as ms

    t = time.perf_counter()
    values = [{k: v.asnumpy() for k, v in ms.load_checkpoint(str(p)).items()} for p in folder.glob("*.ckpt")]
    values.sort(key=lambda v: int(v["global_step"].reshape(-1)[0]))  # training order, from each file's step
    rows = []
    for name in values[0]:
        if values[0][name].dtype.kind != "f" or name.startswith(("moments.", "learning_rate", "momentum")):
            continue
        first = values[0][name].astype(np.float64)
        for i in range(1, len(values)):
            x = values[i][name].astype(np.float64)
            prev = values[i - 1][name].astype(np.float64)
            rows.append(
                (
                    name,
                    np.linalg.norm(x - prev) / np.linalg.norm(prev),
                    np.linalg.norm(x - first) / np.linalg.norm(first),
                )
            )
    return time.perf_counter() - t


def bench_series(base: Path, runs: int) -> dict:
    from tests.series_support import train_series

    folder = base / "series"
    t = time.perf_counter()
    train_series(folder, epochs=3, save_steps=4, batch_size=32)
    files = [Path(p) for p in open_series(folder).paths]
    for extra in files[30:]:  # exactly 30, the first in training order
        extra.chmod(0o600)
        extra.unlink()
    files = files[:30]
    print(f"series: {len(files)} checkpoints of {files[0].stat().st_size / 1e3:.0f} kB written in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    _baseline(folder)  # imports and page cache warm for both
    ours, base_t = [], []
    for _ in range(runs):
        ours.append(_ours(folder))
        base_t.append(_baseline(folder))
    s = open_series(folder)
    t = time.perf_counter()
    s.change()
    again = time.perf_counter() - t
    t = time.perf_counter()
    s.first_nonfinite()
    nonfinite = time.perf_counter() - t
    out = {
        "checkpoints": len(files),
        "open_change_s": min(ours),
        "open_change_median_s": statistics.median(ours),
        "load_checkpoint_all_s": min(base_t),
        "load_checkpoint_all_median_s": statistics.median(base_t),
        "second_look_s": again,
        "first_nonfinite_all_tensors_s": nonfinite,
    }
    print(f"open_series + change(): {min(ours) * 1e3:.0f} ms (median {statistics.median(ours) * 1e3:.0f}) vs "
          f"load_checkpoint of every file + NumPy table: {min(base_t) * 1e3:.0f} ms "
          f"(median {statistics.median(base_t) * 1e3:.0f}); second look {again * 1e3:.1f} ms; "
          f"first_nonfinite() over all tensors (stats pass) {nonfinite * 1e3:.0f} ms")  # fmt: skip
    return out


_OURS = """
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.proc_memory import peak_rss, rss
from ms_notebook import open_checkpoint
import numpy, pandas
before = rss()
t = time.perf_counter()
df = open_checkpoint({path!r}).diagnostics()
took = time.perf_counter() - t
print(json.dumps({{"s": took, "peak": peak_rss() - before, "alpha": dict(zip(df.name, df.alpha)),
                  "sn": dict(zip(df.name, df.lambda_max)), "sr": dict(zip(df.name, df.stable_rank)),
                  "skipped": int((df.status == "skipped").sum()), "layers": len(df)}}))
"""

_WW = """
import json, logging, sys, time, io, contextlib
sys.path.insert(0, {root!r})
from benchmarks.proc_memory import peak_rss, rss
with contextlib.redirect_stdout(io.StringIO()):
    import weightwatcher as ww
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
before = rss()
t = time.perf_counter()
df = ww.WeightWatcher(model={folder!r}).analyze(randomize=False, mp_fit=False, plot=False)
took = time.perf_counter() - t
print(json.dumps({{"s": took, "peak": peak_rss() - before, "alpha": dict(zip(df.longname, df.alpha)),
                  "sn": dict(zip(df.longname, df.spectral_norm)),
                  "sr": dict(zip(df.longname, df.stable_rank)),
                  "layers": len(df)}}))
"""


def _child(code: str) -> dict:
    env = dict(os.environ, GLOG_v="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_diagnostics(base: Path, runs: int) -> dict:
    import mindspore as ms
    from mindcv.models import create_model

    from ms_notebook import open_checkpoint

    path = base / "resnet50.ckpt"
    ms.save_checkpoint(create_model("resnet50", pretrained=False), str(path))
    ck = open_checkpoint(path)
    flat = base / "ww"
    flat.mkdir()
    layers = {}
    names = list(ck.diagnostics(max_size=1)["name"])  # the layers we analyse (all skipped: cheap)
    for i, name in enumerate(names):
        w = np.asarray(ck[name])
        np.save(flat / f"{i}.weight.npy", w)
        kind = "dense" if w.ndim == 2 else "conv2d"
        layers[i] = {"key": name, "name": name, "longname": name, "weightfile": f"{i}.weight.npy",
                     "biasfile": None, "type": kind, "dims": json.dumps(w.shape)}  # fmt: skip
    config = {"framework": "ww_flatfiles", "weights_dir": str(flat), "format": "ww_flatfiles",
              "model_name": "resnet50", "layers": layers}  # fmt: skip
    (flat / "ww_config.json").write_text(json.dumps(config))
    ours, theirs = [], []
    for _ in range(runs):  # alternating, so both sides see the same load
        ours.append(_child(_OURS.format(root=str(ROOT), path=str(path))))
        theirs.append(_child(_WW.format(root=str(ROOT), folder=str(flat))))
    a, b = ours[0], theirs[0]
    common = [n for n in a["alpha"] if n in b["alpha"]]
    rel = [
        abs(a["alpha"][n] - b["alpha"][n]) / b["alpha"][n]
        for n in common
        if b["alpha"][n] > 0 and a["alpha"][n] == a["alpha"][n]
    ]
    srel = [abs(a["sr"][n] - b["sr"][n]) / b["sr"][n] for n in common if b["sr"][n] > 0]
    out = {
        "file_mb": path.stat().st_size / 1e6,
        "layers_ours": a["layers"],
        "layers_ww": b["layers"],
        "ours_s": min(r["s"] for r in ours),
        "ww_s": min(r["s"] for r in theirs),
        "ours_peak_mb": min(r["peak"] for r in ours) / 1e6,
        "ww_peak_mb": min(r["peak"] for r in theirs) / 1e6,
        "alpha_rel_diff_max": max(rel) if rel else None,
        "alpha_rel_diff_median": statistics.median(rel) if rel else None,
        "stable_rank_rel_diff_max": max(srel) if srel else None,
        "alpha_compared": len(rel),
    }
    print(f"ResNet-50 ({out['file_mb']:.0f} MB, {a['layers']} layers): diagnostics {out['ours_s']:.1f} s, "
          f"peak +{out['ours_peak_mb']:.0f} MB  vs  WeightWatcher analyze {out['ww_s']:.1f} s, "
          f"peak +{out['ww_peak_mb']:.0f} MB ({b['layers']} layers); alpha differs by at most "
          f"{out['alpha_rel_diff_max']:.2e} relative over {len(rel)} layers, stable rank by "
          f"{out['stable_rank_rel_diff_max']:.2e}")  # fmt: skip
    return out


def bench_big_matrix(base: Path) -> dict:
    """One 8192 × 1024 float32 weight (32 MiB): peak memory of its diagnostics against the tensor's size
    (ours reads it in row blocks into a 1024² Gram matrix; WeightWatcher loads it whole for its SVD)."""
    from tests.set_support import save

    w = np.random.default_rng(0).standard_normal((8192, 1024)).astype(np.float32)
    path = save(base / "big.ckpt", {"big.weight": w})
    flat = base / "ww-big"
    flat.mkdir()
    np.save(flat / "0.weight.npy", w)
    layer = {"key": "big.weight", "name": "big.weight", "longname": "big.weight",
             "weightfile": "0.weight.npy", "biasfile": None, "type": "dense",
             "dims": json.dumps(w.shape)}  # fmt: skip
    config = {"framework": "ww_flatfiles", "weights_dir": str(flat), "format": "ww_flatfiles",
              "model_name": "big", "layers": {0: layer}}  # fmt: skip
    (flat / "ww_config.json").write_text(json.dumps(config))
    a = _child(_OURS.format(root=str(ROOT), path=str(path)))
    b = _child(_WW.format(root=str(ROOT), folder=str(flat)))
    out = {"tensor_mb": w.nbytes / 1e6, "ours_s": a["s"], "ours_peak_mb": a["peak"] / 1e6, "ww_s": b["s"],
           "ww_peak_mb": b["peak"] / 1e6}  # fmt: skip
    print(f"8192×1024 float32 ({out['tensor_mb']:.0f} MB): diagnostics {a['s']:.1f} s, "
          f"peak +{a['peak'] / 1e6:.0f} MB  vs  WeightWatcher {b['s']:.1f} s, "
          f"peak +{b['peak'] / 1e6:.0f} MB")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-series-", dir=args.dir))
    try:
        results = {
            "series": bench_series(base, args.runs),
            "diagnostics": bench_diagnostics(base, args.runs),
            "big_matrix": bench_big_matrix(base),
        }
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
