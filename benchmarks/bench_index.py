"""Benchmark: listing checkpoints with ms_notebook vs ``mindspore.load_checkpoint``, cold, warm and at scale.

Part 1, a ~1 GB, 480-entry transformer-like ``.ckpt`` (and the same tensors as ``.safetensors``), written with
``mindspore.save_checkpoint`` in a temporary folder. Each figure comes from a fresh subprocess (clean RSS):

- cold: before every run the file is evicted from the page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``);
  bytes really read from disk are ``read_bytes`` of ``/proc/self/io``;
- warm: the file in the page cache (median of several runs);
- peak RSS increase over the process after its imports (``VmHWM``).
"ours" rows are first opens (the saved index off: every run walks the file); "reopen (saved index)" rows
open the file again after one open saved its index (``index_cache``), cold meaning the checkpoint and the
saved index both evicted before every run.
Targets: cold listing reads < 2 MB and is >= 500x a cold load_checkpoint; warm >= 500x; RSS + < 10 MB.

Part 2, many tiny entries written in MindSpore's wire layout: open + tree of 10,000 vs 100,000 entries
(target: <= 12x for 10x the entries, and >= 20x faster than load_checkpoint on the 100,000), and 1,000,000
entries: open and tree time, RSS (target: a few seconds, < 500 MB), and open alone: walking, walking and
saving its index, reopening from the saved index.

    GLOG_v=3 .venv/bin/python benchmarks/bench_index.py [--size-mb 1024] [--dir /tmp] [--skip-million]

Files are deleted at the end.
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

from proc_memory import peak_rss, rss

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = 640
FFN = 2560
LAYERS = 40  # 12 tensors each: 480 entries


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _shapes() -> list[tuple[str, tuple[int, ...]]]:
    """480 transformer-like tensors of float32, about 1 GB (weights, biases and norms as in a real layer)."""
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
    return [(f"model.layers.{i}.{name}", shape) for i in range(LAYERS) for name, shape in per_layer]


def generate_big(folder: Path) -> tuple[Path, Path]:
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(0)
    params = []
    for name, shape in _shapes():
        data = (rng.standard_normal(_numel(shape), dtype=np.float32) * 0.02).reshape(shape)
        params.append({"name": name, "data": ms.Tensor(data)})
    ckpt, st = folder / "big.ckpt", folder / "big.safetensors"
    ms.save_checkpoint(params, str(ckpt))
    ms.save_checkpoint(params, str(st), format="safetensors")
    return ckpt, st


def generate_many(path: Path, n: int) -> Path:
    """``n`` tiny float32 entries named like an LLM shard's, in MindSpore's wire layout."""
    sys.path.insert(0, str(ROOT))
    from tests.ckpt_wire import entry

    content = bytes(16)
    with open(path, "wb") as f:
        for start in range(0, n, 10_000):
            f.write(b"".join(entry(f"model.layers.{i // 25}.block{i % 25}.weight", [4], "Float32", content)
                             for i in range(start, min(n, start + 10_000))))  # fmt: skip
    return path


# --- measurements, each in its own process -----------------------------------------------------------------


def _io(field: str) -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (no privileges needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _measure(what: str, path: str, fmt: str, repeat: int, cold: bool) -> dict:
    from ms_notebook.checkpoint import index_cache

    saved = index_cache.cache_file(path)  # None: the saved index is off in this child
    if what == "ms":
        import mindspore as ms

        def run():
            return ms.load_checkpoint(path, format=fmt)
    else:
        from ms_notebook.checkpoint import open_checkpoint

        def run():
            ck = open_checkpoint(path)
            if what == "list":
                assert len([e.name for e in ck.entries]) == len(ck)
            else:
                assert ck.tree().tensors == len(ck)
            return ck

    base_rss = rss()
    times, cpu, disk = [], [], []
    for _ in range(repeat):
        if cold:
            evict(path)
            if saved is not None and saved.exists():
                evict(str(saved))
        before = _io("read_bytes")
        t0, c0 = time.perf_counter(), time.process_time()
        result = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        del result  # freed outside the timing, for both: what is measured is opening, not tearing down
        disk.append(_io("read_bytes") - before)
    return {
        "median_s": statistics.median(times),
        "cpu_s": statistics.median(cpu),
        "rss_increase": max(0, peak_rss() - base_rss),
        "disk_bytes": statistics.median(disk),
    }


def _child(what: str, path: Path, fmt: str, repeat: int, cold: bool, cache: Path | None = None) -> dict:
    """One measurement in a fresh process; ``cache``: saved indexes' folder (None: off, each open walks)."""
    cmd = [sys.executable, __file__, "--child", what, str(path), fmt, str(repeat), "cold" if cold else "warm"]
    env = dict(os.environ, GLOG_v="3", MS_NOTEBOOK_INDEX_CACHE=str(cache) if cache else "off")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 2**20:8.2f} MB"


def _row(label: str, r: dict) -> None:
    print(f"  {label:34s} {r['median_s'] * 1e3:10.2f} ms (CPU {r['cpu_s'] * 1e3:10.2f} ms)   "
          f"RSS +{_mb(r['rss_increase'])}   read from disk {_mb(r['disk_bytes'])}")  # fmt: skip
    sys.stdout.flush()


def part_big(folder: Path, repeat: int) -> None:
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--generate-big", str(folder)]
    subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, GLOG_v="3"))
    ckpt, st = folder / "big.ckpt", folder / "big.safetensors"
    print(f"generated in {time.perf_counter() - t0:.0f} s: {ckpt.name} {_mb(ckpt.stat().st_size)}, "
          f"{st.name} {_mb(st.stat().st_size)}, {len(_shapes())} tensors")  # fmt: skip
    for path, fmt in ((ckpt, "ckpt"), (st, "safetensors")):
        print(f"\n== {fmt}: listing every entry")
        rows = {}
        for label, what, n, cold in (
            ("ours cold", "list", max(3, repeat // 4), True),
            ("load_checkpoint cold", "ms", 1, True),
            ("ours warm", "list", repeat, False),
            ("load_checkpoint warm", "ms", 2, False),
        ):
            rows[label] = _child(what, path, fmt, n, cold)
            _row(label, rows[label])
        for temp in ("cold", "warm"):
            ours, ms_ = rows[f"ours {temp}"], rows[f"load_checkpoint {temp}"]
            speed = ms_["median_s"] / ours["median_s"]
            print(f"  {temp}: ours is {speed:6.0f}x the speed of load_checkpoint "
                  f"(CPU {ms_['cpu_s'] / ours['cpu_s']:6.0f}x; target >= 500x), "
                  f"RSS +{_mb(ours['rss_increase'])} "
                  f"(target < 10 MB), disk {_mb(ours['disk_bytes'])} (cold target < 2 MB)")  # fmt: skip
        if fmt == "ckpt":
            reopen(folder / "index-cache", path, rows, repeat)


def reopen(cache: Path, path: Path, rows: dict, repeat: int) -> None:
    """Reopening a .ckpt whose index an earlier open saved, cold (file and saved index evicted) and warm."""
    _child("list", path, "ckpt", 1, False, cache)  # the first open, which saves the index
    if not any(cache.glob("*.idx")):
        raise SystemExit(f"the first open of {path} saved no index in {cache}: the reopen rows would walk")
    for temp, n in (("cold", max(3, repeat // 4)), ("warm", repeat)):
        label = f"ours {temp}, reopen (saved index)"
        rows[label] = r = _child("list", path, "ckpt", n, temp == "cold", cache)
        _row(label, r)
        ms_ = rows[f"load_checkpoint {temp}"]
        print(f"  {temp} reopen: {ms_['median_s'] / r['median_s']:6.0f}x the speed of load_checkpoint {temp} "
              f"(CPU {ms_['cpu_s'] / r['cpu_s']:6.0f}x; target >= 500x), "
              f"{rows[f'ours {temp}']['median_s'] / r['median_s']:.1f}x the first open")  # fmt: skip


def part_many(folder: Path, repeat: int, million: bool) -> None:
    print("\n== many tiny entries (wire layout), warm: open + tree")
    figures = {}
    for n in (10_000, 100_000, *((1_000_000,) if million else ())):
        path = generate_many(folder / f"many{n}.ckpt", n)
        figures[n] = _child("tree", path, "ckpt", 3 if n < 1_000_000 else 1, False)
        _row(f"{n:>9,} entries, ours", figures[n])
        if n == 100_000:
            figures["ms"] = _child("ms", path, "ckpt", 1, False)
            _row(f"{n:>9,} entries, load_ckpt", figures["ms"])
        path.unlink()
    for clock, label in (("median_s", "wall"), ("cpu_s", "CPU")):
        ratio = figures[100_000][clock] / figures[10_000][clock]
        speed = figures["ms"][clock] / figures[100_000][clock]
        print(f"  {label:4s}: 100,000 / 10,000 entries {ratio:.1f}x the time (target <= 12x); ours is "
              f"{speed:.0f}x the speed of load_checkpoint on 100,000 (target >= 20x)")  # fmt: skip
    if million:
        m = figures[1_000_000]
        print(f"  1,000,000 entries: open + tree {m['median_s']:.1f} s, RSS +{_mb(m['rss_increase'])} "
              "(target: a few seconds, < 500 MB)")  # fmt: skip
        path = generate_many(folder / "million.ckpt", 1_000_000)
        only = _child("list", path, "ckpt", 1, False)
        print(f"  1,000,000 entries: open alone {only['median_s']:.2f} s, RSS +{_mb(only['rss_increase'])}")
        cache = folder / "index-cache"
        first = _child("list", path, "ckpt", 1, False, cache)
        if not any(cache.glob("*.idx")):
            raise SystemExit(f"the first open of {path} saved no index in {cache}: reopens would walk")
        print(f"  1,000,000 entries: open alone, first (walk + save index) {first['median_s']:.2f} s, "
              f"RSS +{_mb(first['rss_increase'])}")  # fmt: skip
        again = _child("list", path, "ckpt", 3, False, cache)
        speed = only["median_s"] / again["median_s"]
        print(f"  1,000,000 entries: open alone, reopen from saved index {again['median_s']:.2f} s, "
              f"RSS +{_mb(again['rss_increase'])} ({speed:.1f}x the walk)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to write the temporary files")
    parser.add_argument("--repeat", type=int, default=20, help="warm runs of ours per figure")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-million", action="store_true")
    parser.add_argument("--child", nargs=5, metavar=("WHAT", "PATH", "FORMAT", "REPEAT", "COLD"))
    parser.add_argument("--generate-big", metavar="FOLDER")
    args = parser.parse_args()
    if args.generate_big:
        generate_big(Path(args.generate_big))
        return
    if args.child:
        what, path, fmt, repeat, cold = args.child
        print(json.dumps(_measure(what, path, fmt, int(repeat), cold == "cold")))
        return
    folder = Path(tempfile.mkdtemp(prefix="bench_index_", dir=args.dir))
    try:
        if not args.skip_big:
            part_big(folder, args.repeat)
        part_many(folder, args.repeat, not args.skip_million)
    finally:
        for p in folder.glob("*"):
            os.chmod(p, 0o700 if p.is_dir() else 0o600)
        shutil.rmtree(folder, ignore_errors=True)
        print(f"\nremoved {folder}")


if __name__ == "__main__":
    main()
