"""Benchmark: listing and reading a ~1 GB checkpoint with ms_notebook vs ``mindspore.load_checkpoint``.

Generates a transformer-like ~1 GB ``.ckpt`` and the same tensors as ``.safetensors`` with
``mindspore.save_checkpoint`` in a temporary folder, then measures, each in a fresh subprocess (clean RSS):
time to list every entry (median of several runs), peak RSS increase, and time to read one tensor (with the
bytes the process read, from /proc/self/io). Prints figures and ratios; deletes the files at the end.

    GLOG_v=3 .venv/bin/python benchmarks/bench_index.py [--size-mb 1024] [--dir /tmp]

Timings are with the file in the page cache (warm), the same for both readers.
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

HIDDEN = 1024
FFN = 4096
VOCAB = 32000


def _shapes(size_mb: int) -> list[tuple[str, tuple[int, ...]]]:
    """A transformer-like parameter list of about ``size_mb`` MB of float32."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    per_layer = [
        ("self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
        ("self_attn.q_proj.bias", (HIDDEN,)),
        ("self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
        ("self_attn.k_proj.bias", (HIDDEN,)),
        ("self_attn.v_proj.weight", (HIDDEN, HIDDEN)),
        ("self_attn.v_proj.bias", (HIDDEN,)),
        ("self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
        ("mlp.gate_proj.weight", (FFN, HIDDEN)),
        ("mlp.up_proj.weight", (FFN, HIDDEN)),
        ("mlp.down_proj.weight", (HIDDEN, FFN)),
        ("input_layernorm.weight", (HIDDEN,)),
        ("post_attention_layernorm.weight", (HIDDEN,)),
    ]
    layer_bytes = sum(4 * _numel(s) for _, s in per_layer)
    fixed = 4 * (2 * VOCAB * HIDDEN + HIDDEN)
    layers = max(1, (size_mb * 2**20 - fixed) // layer_bytes)
    for i in range(layers):
        shapes += [(f"model.layers.{i}.{name}", shape) for name, shape in per_layer]
    shapes += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return shapes


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def generate(folder: Path, size_mb: int) -> tuple[Path, Path, str]:
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(0)
    params = []
    for name, shape in _shapes(size_mb):
        data = rng.standard_normal(shape, dtype=np.float32) * 0.02
        params.append({"name": name, "data": ms.Tensor(data)})
    ckpt, st = folder / "big.ckpt", folder / "big.safetensors"
    extra = {"epoch_num": 10, "step_num": 12345}
    ms.save_checkpoint(params, str(ckpt), append_dict=dict(extra))
    ms.save_checkpoint(params, str(st), format="safetensors", append_dict=dict(extra))
    middle = params[len(params) // 2]["name"]
    return ckpt, st, middle


# --- measurements, each run in its own process ------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """VmHWM: this process image's peak RSS (unlike ru_maxrss, not inherited from the parent across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _read_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def _measure(what: str, path: str, fmt: str, name: str, repeat: int) -> dict:
    """Time ``repeat`` runs of one operation; peak RSS and bytes read are relative to after the imports."""
    if what.startswith("ms_"):
        import mindspore as ms

        def list_all():
            return list(ms.load_checkpoint(path, format=fmt))

        def read_one():
            return ms.load_checkpoint(path, format=fmt, choice_func=lambda n: n == name)[name].asnumpy()
    else:
        from ms_notebook.checkpoint import open_checkpoint

        def list_all():
            return [e.name for e in open_checkpoint(path).entries]

        def read_one():
            return open_checkpoint(path)[name]

    fn = list_all if what.endswith("list") else read_one
    base_rss, base_read = _rss(), _read_bytes()
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    peak = _peak_rss()
    return {
        "median_s": statistics.median(times),
        "rss_increase": max(0, peak - base_rss),
        "read_bytes": (_read_bytes() - base_read) / repeat,
    }


def _child(what: str, path: Path, fmt: str, name: str, repeat: int) -> dict:
    """Run one measurement in a fresh interpreter and return its figures."""
    cmd = [sys.executable, __file__, "--child", what, str(path), fmt, name, str(repeat)]
    env = dict(os.environ, GLOG_v="3")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 2**20:8.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to write the temporary files")
    parser.add_argument("--ms-repeat", type=int, default=3, help="load_checkpoint runs per figure")
    parser.add_argument("--our-repeat", type=int, default=30, help="ms_notebook runs per figure")
    parser.add_argument("--child", nargs=5, metavar=("WHAT", "PATH", "FORMAT", "NAME", "REPEAT"))
    parser.add_argument("--generate", nargs=2, metavar=("FOLDER", "SIZE_MB"))
    args = parser.parse_args()
    if args.generate:
        print(generate(Path(args.generate[0]), int(args.generate[1]))[2])
        return
    if args.child:
        what, path, fmt, name, repeat = args.child
        print(json.dumps(_measure(what, path, fmt, name, int(repeat))))
        return

    folder = Path(tempfile.mkdtemp(prefix="bench_index_", dir=args.dir))
    try:
        t0 = time.perf_counter()
        # generate in a subprocess too, so this process stays small
        cmd = [sys.executable, __file__, "--generate", str(folder), str(args.size_mb)]
        env = dict(os.environ, GLOG_v="3")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        name = out.stdout.strip().splitlines()[-1]
        ckpt, st = folder / "big.ckpt", folder / "big.safetensors"
        print(f"generated in {time.perf_counter() - t0:.0f} s: {ckpt.name} {_mb(ckpt.stat().st_size)}, "
              f"{st.name} {_mb(st.stat().st_size)}; one tensor: {name}")  # fmt: skip
        sys.stdout.flush()
        from ms_notebook.checkpoint import open_checkpoint

        for path, fmt in ((ckpt, "ckpt"), (st, "safetensors")):
            ck = open_checkpoint(path)
            info = ck.info(name)
            print(f"\n== {fmt}: {len(ck)} entries, {_mb(ck.file_size)}; "
                  f"reading {name} {list(info.shape)} = {_mb(info.nbytes)}")  # fmt: skip
            rows = {}
            for what, repeat in (("ours_list", args.our_repeat), ("ms_list", args.ms_repeat),
                                 ("ours_read", args.our_repeat), ("ms_read", args.ms_repeat)):  # fmt: skip
                rows[what] = _child(what, path, fmt, name, repeat)
                r = rows[what]
                print(f"  {what:10s} median {r['median_s'] * 1e3:10.2f} ms   "
                      f"peak RSS +{_mb(r['rss_increase'])}   "
                      f"bytes read/run {_mb(r['read_bytes'])}")  # fmt: skip
                sys.stdout.flush()
            for op in ("list", "read"):
                ours, ms_ = rows[f"ours_{op}"], rows[f"ms_{op}"]
                ratio = ms_["median_s"] / ours["median_s"]
                print(f"  {op}: ours is {ratio:8.2f}x the speed of load_checkpoint, "
                      f"RSS +{_mb(ours['rss_increase'])} vs +{_mb(ms_['rss_increase'])}")  # fmt: skip
    finally:
        for p in folder.glob("*"):
            os.chmod(p, 0o600)
        shutil.rmtree(folder, ignore_errors=True)
        print(f"\nremoved {folder}")


if __name__ == "__main__":
    main()
