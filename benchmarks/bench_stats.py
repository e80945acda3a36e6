"""Benchmark: statistics + histogram of big tensors in one pass, and a click in the notebook browser.

Files are written in a temporary folder in MindSpore's wire layout (a 512 MB float32 tensor; a 1 GB bfloat16
tensor split over two entries as ``save_checkpoint`` splits tensors over 512 MiB), then, each in a fresh
subprocess with the file in the page cache:

- the baseline: one raw NumPy pass over the tensor's bytes, ``np.fromfile`` + ``mean``;
- ``Checkpoint.describe`` (statistics + 40-bin histogram, one pass), with its peak RSS increase
  (target: within 3x the baseline, extra memory about one chunk);
- the README's two calls, ``ck.stats(name)`` then ``ck.histogram(name, bins=50)`` (and ``bins=20`` after it),
  from cold: one pass, the histograms from what it kept (target: within 3x the baseline);
- a click in the notebook browser (``CheckpointBrowser.select``, the details pane drawn), first and second
  time (the second comes from the summary cache), on the 1 GB bfloat16 tensor and on the demo checkpoint.

The Checkpoint Viewer's click (the server) is measured in bench_server.py.

    GLOG_v=3 .venv/bin/python benchmarks/bench_stats.py [--dir /tmp] [--repeat 3]
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
from proc_memory import peak_rss, rss

ROOT = Path(__file__).resolve().parent.parent
F32_ELEMENTS = 128 << 20  # 512 MiB of float32
BF16_ELEMENTS = 512 << 20  # 1 GiB of bfloat16
SPLIT = 512 << 20  # bytes per entry, as MindSpore splits big tensors


def _write_tensor(path: Path, name: str, dims: list[int], tensor_type: str, dtype, count: int) -> None:
    """One tensor of normal values (spread 0.02, as trained weights) split into entries of SPLIT bytes,
    written in blocks so memory stays small."""
    sys.path.insert(0, str(ROOT))
    from tests.ckpt_wire import varint

    rng = np.random.default_rng(0)
    itemsize = np.dtype(dtype).itemsize
    per_entry = SPLIT // itemsize
    with open(path, "wb") as f:
        for start in range(0, count, per_entry):
            n = min(per_entry, count - start)
            tensor = b"".join(b"\x08" + varint(d) for d in dims)
            tensor += b"\x12" + varint(len(tensor_type)) + tensor_type.encode()
            head_tensor = tensor + b"\x1a" + varint(n * itemsize)
            tag = name.encode()
            value_len = (
                1 + len(varint(len(tag))) + len(tag) + 1 + len(varint(len(head_tensor) + n * itemsize))
            )
            value_len += len(head_tensor) + n * itemsize
            f.write(b"\x0a" + varint(value_len) + b"\x0a" + varint(len(tag)) + tag)
            f.write(b"\x12" + varint(len(head_tensor) + n * itemsize) + head_tensor)
            for block in range(0, n, 1 << 24):
                m = min(1 << 24, n - block)
                f.write((rng.standard_normal(m, dtype=np.float32) * 0.02).astype(dtype).tobytes())
        small = np.arange(16, dtype=np.float32).tobytes()
        f.write(b"".join([_entry("tiny", [16], "Float32", small)]))


def _entry(name: str, dims: list[int], tensor_type: str, content: bytes) -> bytes:
    sys.path.insert(0, str(ROOT))
    from tests.ckpt_wire import entry

    return entry(name, dims, tensor_type, content)


def _raw_pass(path: str, spans, dtype: np.dtype, bits: bool = False) -> float:
    """One raw NumPy pass: np.fromfile over each span (a split tensor has two) + mean; ``bits`` reads the
    same bytes as unsigned integers of the same width (no bfloat16 arithmetic)."""
    as_type = np.dtype(f"u{dtype.itemsize}") if bits else dtype
    total = 0.0
    for offset, length in spans:
        total += float(np.fromfile(path, dtype=as_type, count=length // dtype.itemsize, offset=offset).mean())
    return total


def _measure(what: str, path: str, name: str, repeat: int) -> dict:
    """``what``: "ratio" (the raw pass, describe and a notebook click, interleaved round by round, so the
    machine's load hits them alike) or "memory" (describe alone, for its peak RSS)."""
    import ml_dtypes

    from ms_notebook.checkpoint import open_checkpoint
    from ms_notebook.checkpoint.summaries import clear_all
    from ms_notebook.widgets.browser import CheckpointBrowser

    ck = open_checkpoint(path)
    info = ck.info(name)
    dtype = np.dtype(ml_dtypes.bfloat16) if info.dtype == "BFloat16" else np.dtype(np.float32)
    spans = ck._by_name[name].spans
    browser = CheckpointBrowser(ck)
    other = next(e.name for e in ck.entries if e.name != name and e.kind == "tensor")
    browser.select(other)
    if what == "memory":
        base = rss()
        t0 = time.perf_counter()
        ck.describe(name, 40)
        return {"describe_s": time.perf_counter() - t0, "rss_increase": max(0, peak_rss() - base)}
    rounds: dict[str, list[float]] = {
        "numpy": [], "numpy_bits": [], "describe": [], "stats_hist": [], "click": [], "again": []
    }  # fmt: skip
    steps = ["numpy", "numpy_bits", "describe", "stats_hist", "click"]
    for i in range(repeat):
        for step in steps[i % 5 :] + steps[: i % 5]:  # a rotating order: none always runs first
            _warm(Path(path))  # whatever the others did to the page cache, each step starts warm
            clear_all()
            t0 = time.perf_counter()
            if step in ("numpy", "numpy_bits"):
                _raw_pass(path, spans, dtype, bits=step == "numpy_bits")
            elif step == "describe":
                ck.describe(name, 40)
            elif step == "stats_hist":
                ck.stats(name)
                ck.histogram(name, bins=50)
                ck.histogram(name, bins=20)
            else:
                browser.select(name)  # the details pane: statistics, histogram, preview
                rounds["click"].append(time.perf_counter() - t0)
                browser.select(other)
                t0 = time.perf_counter()
                browser.select(name)  # the second click on the same tensor: from the cache
                assert "ms-hist" in browser.details.value
                rounds["again"].append(time.perf_counter() - t0)
                browser.select(other)
                continue
            rounds[step].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) for k, v in rounds.items()}
    out["describe_ratio"] = statistics.median(
        d / n for d, n in zip(rounds["describe"], rounds["numpy"], strict=True)
    )
    out["stats_hist_ratio"] = statistics.median(
        d / n for d, n in zip(rounds["stats_hist"], rounds["numpy"], strict=True)
    )
    out["click_ratio"] = statistics.median(
        c / n for c, n in zip(rounds["click"], rounds["numpy"], strict=True)
    )
    return out


def _child(what: str, path: Path, name: str, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--child", what, str(path), name, str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, GLOG_v="3"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("WHAT", "PATH", "NAME", "REPEAT"))
    args = parser.parse_args()
    if args.child:
        what, path, name, repeat = args.child
        print(json.dumps(_measure(what, path, name, int(repeat))))
        return
    folder = Path(tempfile.mkdtemp(prefix="bench_stats_", dir=args.dir))
    try:
        cases = [
            ("512 MB float32", folder / "f32.ckpt", "w", [F32_ELEMENTS], "Float32", np.float32, F32_ELEMENTS),
            (
                "1 GB bfloat16",
                folder / "bf16.ckpt",
                "w",
                [32768, 16384],
                "BFloat16",
                "bfloat16",
                BF16_ELEMENTS,
            ),
        ]
        import ml_dtypes

        for label, path, name, dims, tensor_type, dtype, count in cases:
            dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
            t0 = time.perf_counter()
            _write_tensor(path, name, dims, tensor_type, dtype, count)
            _warm(path)
            took = time.perf_counter() - t0
            print(f"\n== {label}: {path.stat().st_size / 2**20:.0f} MB written in {took:.0f} s "
                  f"(page cache warm; {args.repeat} interleaved rounds, medians)")  # fmt: skip
            r = _child("ratio", path, name, args.repeat)
            mem = _child("memory", path, name, 1)
            print(f"  np.fromfile + mean        {r['numpy']:7.3f} s")
            print(f"  same bytes as uint + mean {r['numpy_bits']:7.3f} s")
            chunk_mb = min(count, 1 << 21) * dtype.itemsize / 2**20
            print(f"  describe (stats + hist)   {r['describe']:7.3f} s   {r['describe_ratio']:5.2f}x the raw "
                  f"pass (target <= 3x); peak RSS +{mem['rss_increase'] / 2**20:.1f} MB (one chunk: "
                  f"{chunk_mb:.0f} MB)")  # fmt: skip
            print(f"  stats + histogram(50, 20) {r['stats_hist']:7.3f} s   {r['stats_hist_ratio']:5.2f}x "
                  f"the raw pass (target <= 3x)")  # fmt: skip
            print(f"  notebook browser click    {r['click']:7.3f} s   {r['click_ratio']:5.2f}x the raw pass "
                  f"(target <= 3x); second click {r['again'] * 1e3:.1f} ms")  # fmt: skip
            path.unlink()
        demo = demo_checkpoint()
        name = "block3.dense.weight"
        print(f"\n== demo checkpoint {demo.name} ({demo.stat().st_size / 1024:.0f} KB), {name}")
        r = _child("ratio", demo, name, max(args.repeat, 7))
        print(f"  notebook browser click {r['click'] * 1e3:.1f} ms, second click {r['again'] * 1e3:.1f} ms "
              f"(the issue measured 1.0-1.2 s before)")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"\nremoved {folder}")


def demo_checkpoint() -> Path:
    cmd = [sys.executable, "-m", "ms_notebook.demo", "prepare"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, GLOG_v="3"))
    return Path(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
