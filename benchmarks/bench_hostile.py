"""Benchmark: what hostile inputs cost now (issue: nothing a file, a name or a filter does takes down the
kernel or the server).

- the ReDoS filter ``/^([\\w.]+)+Q$/``: Python's ``re`` against RE2 on names of growing length (``re`` is
  exponential: stopped at 24 characters), then a real Jupyter server with the extension, timing
  ``/api/status`` (a tiny request) while 4 clients keep asking for that filter on a 30-character name;
- a strategy naming one million parameters no rank holds, and a ``dev_matrix`` of ``[10**6]`` on 2 ranks:
  seconds to the CheckpointError (before: 13.6 s and 470 MB, and 5.2 s and 308 MB).

    GLOG_v=3 .venv/bin/python benchmarks/bench_hostile.py
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import re2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ms_notebook.checkpoint import CheckpointError, open_checkpoint  # noqa: E402
from tests.ckpt_wire import varint, write_ckpt  # noqa: E402
from tests.servers import jupyter_env, jupyter_server  # noqa: E402

PATTERN = r"^([\w.]+)+Q$"


def regex_engines() -> None:
    print("ReDoS pattern, one search (Python re / RE2):")
    for n in (16, 20, 22, 24):
        name = "a" * n
        start = time.perf_counter()
        re.search(PATTERN, name)
        slow = time.perf_counter() - start
        start = time.perf_counter()
        re2.search(PATTERN, name)
        fast = time.perf_counter() - start
        print(f"  {n:3d} chars: re {slow * 1e3:10.1f} ms   re2 {fast * 1e6:7.1f} us")
    start = time.perf_counter()
    re2.search(PATTERN, "a" * 100_000)
    print(f"  100,000 chars: re2 {(time.perf_counter() - start) * 1e3:.2f} ms")


def server_while_redos(base: Path) -> None:
    root = base / "root"
    root.mkdir()
    one = np.ones(4, np.float32).tobytes()
    write_ckpt(root / "long.ckpt", [("a" * 30, [4], "Float32", one)])
    launcher = [sys.executable, "-m", "jupyter_server"]
    args = ["--ServerApp.jpserver_extensions={'ms_notebook': True}"]
    with jupyter_server(launcher, root, jupyter_env(base), base / "log", args) as (url, token):
        headers = {"Authorization": f"token {token}"}
        query = urllib.parse.urlencode({"path": "long.ckpt", "filter": f"/{PATTERN}/", "depth": "0"})
        stop = threading.Event()
        asked = [0]

        def hammer() -> None:
            while not stop.is_set():
                request = urllib.request.Request(f"{url}/ms-notebook/checkpoint?{query}", headers=headers)
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
                asked[0] += 1

        def status_s() -> float:
            start = time.perf_counter()
            request = urllib.request.Request(f"{url}/api/status", headers=headers)
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
            return time.perf_counter() - start

        alone = sorted(status_s() for _ in range(50))
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        busy = sorted(status_s() for _ in range(200))
        stop.set()
        for t in threads:
            t.join()
    p95 = lambda xs: xs[int(0.95 * (len(xs) - 1))]  # noqa: E731
    print(f"/api/status alone: median {statistics.median(alone) * 1e3:.1f} ms, p95 {p95(alone) * 1e3:.1f} ms")
    print(f"/api/status with 4 clients asking the ReDoS filter ({asked[0]} answered meanwhile): "
          f"median {statistics.median(busy) * 1e3:.1f} ms, p95 {p95(busy) * 1e3:.1f} ms")


def hostile_sets(base: Path) -> None:
    def layout(dev: list[int]) -> bytes:
        def ints(number: int, values: list[int]) -> bytes:
            body = b"".join(b"\x08" + varint(v) for v in values)
            return bytes([number << 3 | 2]) + varint(len(body)) + body
        return ints(1, dev) + ints(2, [0, -1])

    def strategy(folder: Path, names: list[str], dev: list[int]) -> None:
        lay = layout(dev)
        items = []
        for name in names:
            item = b"\x0a" + varint(len(name)) + name.encode() + b"\x12" + varint(len(lay)) + lay
            items.append(b"\x1a" + varint(len(item)) + item)
        (folder / "strategy.ckpt").write_bytes(b"".join(items))

    for label, names, dev in (("1M unknown parameters", [f"p.{i}" for i in range(1_000_000)], [2]),
                              ("dev_matrix [10**6]", ["w"], [10**6])):
        folder = base / label.split()[0].replace("[", "")
        for r in range(2):
            (folder / f"rank_{r}").mkdir(parents=True)
            write_ckpt(folder / f"rank_{r}" / "n.ckpt", [("w", [2, 8], "Float32", bytes(64))])
        strategy(folder, names, dev)
        start = time.perf_counter()
        try:
            open_checkpoint(folder)
            outcome = "opened"
        except CheckpointError as exc:
            outcome = exc.problem[:70]
        print(f"{label}: {time.perf_counter() - start:.2f} s: {outcome}")


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    regex_engines()
    hostile_sets(base)
    server_while_redos(base)


if __name__ == "__main__":
    main()
