"""Benchmark: listing remote checkpoints by range reads, through a proxy that adds 20 ms to every request
(nginx on 127.0.0.1 behind ``tests.remote_servers.FaultProxy``).

1. A ~1 GB, 480-entry transformer-like ``.ckpt`` (``bench_index``'s shapes, written sparse: the headers hold
   bytes, the tensors are holes nginx serves as zeros): ``open_checkpoint(url)`` with the saved index off —
   requests, round trips, bytes and seconds — beside downloading the file at 100 MB/s (one request plus
   size / 100 MB/s, computed). Goals: < 1 s, < 2 MB. Then the reopen of the unchanged object with the saved
   index on. Goal: one request.
2. A 30-shard LLM-shaped safetensors set (``bench_sets``'s GPT-3-sized shards, sparse) by its index URL,
   beside ``huggingface_hub``-style header reads: the index, then one ranged GET of 100 KB per shard (32
   threads, as concurrent as ours). Goals: <= 1 request per shard + the index, within 1.5x the baseline.

Best of ``--runs`` (medians printed too). Removes its files at the end.

    GLOG_v=3 .venv/bin/python benchmarks/bench_remote.py [--dir /tmp] [--runs 5] [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_index import _numel, _shapes  # noqa: E402
from bench_sets import _write_sparse_shards  # noqa: E402

from ms_notebook import open_checkpoint  # noqa: E402
from tests.ckpt_wire import varint  # noqa: E402
from tests.remote_servers import FaultProxy, nginx  # noqa: E402

DOWNLOAD_BPS = 100e6


def write_sparse_ckpt(path: Path) -> tuple[int, int]:
    """``bench_index``'s 480 float32 tensors in MindSpore's wire layout, tensor bytes left as holes.
    Returns (entries, size)."""
    n = 0
    with open(path, "wb") as f:
        for name, shape in _shapes():
            nbytes = 4 * _numel(shape)
            dims = b"".join(b"\x08" + varint(d) for d in shape)
            tensor = dims + b"\x12\x07Float32" + b"\x1a" + varint(nbytes)
            tag = name.encode()
            value = b"\x0a" + varint(len(tag)) + tag + b"\x12" + varint(len(tensor) + nbytes) + tensor
            f.write(b"\x0a" + varint(len(value) + nbytes) + value)
            f.seek(nbytes, os.SEEK_CUR)
            n += 1
        f.truncate(f.tell())
        return n, f.tell()


def _best(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def bench_ckpt(url: str, runs: int, cache: Path) -> dict:
    rows = []
    for _ in range(runs):
        os.environ["MS_NOTEBOOK_INDEX_CACHE"] = "off"
        t0 = time.perf_counter()
        ck = open_checkpoint(url)
        rows.append((time.perf_counter() - t0, ck.remote))
    seconds = [r[0] for r in rows]
    listing = rows[0][1]
    os.environ["MS_NOTEBOOK_INDEX_CACHE"] = str(cache)
    open_checkpoint(url)  # walk once, save the index
    reopen = []
    for _ in range(runs):
        t0 = time.perf_counter()
        ck = open_checkpoint(url)
        reopen.append((time.perf_counter() - t0, ck.remote))
    return {
        "entries": len(ck),
        "size": ck.file_size,
        "seconds": _best(seconds),
        "requests": listing["requests"],
        "round_trips": listing["round_trips"],
        "bytes": listing["bytes"],
        "reopen_seconds": _best([r[0] for r in reopen]),
        "reopen_requests": reopen[0][1]["requests"],
        "reopen_bytes": reopen[0][1]["bytes"],
    }


def _hf_style(index_url: str) -> tuple[int, int]:
    """The index, then one ranged GET of the first 100 KB of each shard; returns (requests, bytes)."""
    with urllib.request.urlopen(index_url) as r:
        data = r.read()
    shards = sorted(set(json.loads(data)["weight_map"].values()))
    base = index_url.rsplit("/", 1)[0]

    def head(name: str) -> int:
        req = urllib.request.Request(f"{base}/{name}", headers={"Range": "bytes=0-102399"})
        with urllib.request.urlopen(req) as r:
            return len(r.read())

    with ThreadPoolExecutor(32) as pool:
        got = sum(pool.map(head, shards))
    return 1 + len(shards), len(data) + got


def bench_set(index_url: str, runs: int) -> dict:
    ours, theirs = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        ck = open_checkpoint(index_url)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        requests, nbytes = _hf_style(index_url)
        theirs.append(time.perf_counter() - t0)
    return {
        "tensors": len(ck),
        "shards": len(ck.files) - 1,
        "seconds": _best(ours),
        "requests": ck.remote["requests"],
        "round_trips": ck.remote["round_trips"],
        "bytes": ck.remote["bytes"],
        "baseline_seconds": _best(theirs),
        "baseline_requests": requests,
        "baseline_bytes": nbytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_remote_", dir=args.dir))
    try:
        www = folder / "www"
        www.mkdir()
        entries, size = write_sparse_ckpt(www / "big.ckpt")
        _write_sparse_shards(www)
        os.utime(www / "big.ckpt", (time.time() - 60, time.time() - 60))
        with nginx(www, folder / "nginx") as base:
            host, port = base.split("//")[1].split(":")
            with FaultProxy((host, int(port)), delay_s=args.delay_ms / 1000) as proxy:
                ck = bench_ckpt(proxy.url("/big.ckpt"), args.runs, folder / "cache")
                st = bench_set(proxy.url("/model.safetensors.index.json"), args.runs)
        delay = args.delay_ms / 1000
        download = delay + size / DOWNLOAD_BPS
        mb = 1e6
        print(f"proxy: {args.delay_ms:g} ms per request; best of {args.runs} (median)\n")
        print(f"1. .ckpt, {entries} entries, {size / 1e9:.2f} GB")
        print(f"   ours     {ck['seconds'][0]:.3f} s ({ck['seconds'][1]:.3f})  {ck['requests']} requests in "
              f"{ck['round_trips']} round trips, {ck['bytes'] / mb:.2f} MB   (goal < 1 s, < 2 MB)")
        print(f"   download {download:.2f} s at 100 MB/s  1 request, {size / mb:.0f} MB")
        print(f"   reopen   {ck['reopen_seconds'][0]:.3f} s ({ck['reopen_seconds'][1]:.3f})  "
              f"{ck['reopen_requests']} request, {ck['reopen_bytes'] / mb:.2f} MB   (goal: 1 request)")
        print(f"\n2. safetensors set: {st['shards']} shards, {st['tensors']} tensors, by its index URL")
        print(f"   ours      {st['seconds'][0]:.3f} s ({st['seconds'][1]:.3f})  {st['requests']} requests in "
              f"{st['round_trips']} round trips, {st['bytes'] / mb:.2f} MB")  # fmt: skip
        print(f"   hf-style  {st['baseline_seconds'][0]:.3f} s ({st['baseline_seconds'][1]:.3f})  "
              f"{st['baseline_requests']} requests, {st['baseline_bytes'] / mb:.2f} MB")  # fmt: skip
        ratio = st["seconds"][0] / st["baseline_seconds"][0]
        print(f"   ratio {ratio:.2f}x (goal <= 1.5x; <= {st['shards'] + 1} requests)")
        print(json.dumps({"ckpt": ck, "set": st, "download_s": download}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
