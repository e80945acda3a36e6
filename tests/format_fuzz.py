"""Seeded mutation fuzz of the set formats we parse ourselves: the protobuf strategy, the JSON strategy and
the safetensors index JSON. Shared by tests/test_fuzz_formats.py (a few hundred cases) and
benchmarks/fuzz_formats.py (as many as asked).

Every case writes one mutated file into a copy of a real set and opens it in a child process capped in
memory (``run_cases``), each case under a time limit; the only acceptable outcomes are a Checkpoint whose
values can all be read, or a CheckpointError. Anything else (another exception, a timeout, the child dying)
is reported with the case's seed so it can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_NUMBERS = [-1, 0, 1, 2, 3, 2**31 - 1, 2**31, 2**32, 2**63 - 1, -(2**63), 10**6, 10**8, 1e30,
                   -0.5, 1.5, True, None, "", "²", "٣", "9" * 50, [], [[]], [-1, [-1, 1]], {},
                   [1] * 40]  # fmt: skip
KINDS = ("strategy-pb", "strategy-json", "index-json")


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:  # flip a byte
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:  # delete a range
            del buf[at : at + rng.randint(1, 16)]
        elif op == 3 and buf:  # duplicate a range
            end = min(len(buf), at + rng.randint(1, 64))
            buf[at:at] = buf[at:end]
        elif op == 4:  # a huge varint
            buf[at:at] = b"\xff" * rng.randint(5, 10) + b"\x01"
        elif op == 5 and buf:  # truncate
            del buf[at:]
        elif op == 6 and buf:  # a byte set to a field key / length edge value
            buf[min(at, len(buf) - 1)] = rng.choice([0x00, 0x08, 0x0A, 0x12, 0x1A, 0x7F, 0x80, 0xFF])
    return bytes(buf)


def _leaves(obj: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _leaves(v, (*path, i))
    return out


def _set_at(obj: object, path: tuple, value: object) -> object:
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return obj


def _mutate_json(rng: random.Random, text: str) -> str:
    if rng.random() < 0.2:
        return _mutate_bytes(rng, text.encode()).decode("utf-8", "replace")
    obj = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        paths = _leaves(obj)
        path = rng.choice(paths)
        op = rng.randrange(5)
        if op == 0:  # a hostile value
            obj = _set_at(obj, path, json.loads(json.dumps(rng.choice(HOSTILE_NUMBERS))))
        elif op == 1 and path:  # remove a key or an item
            parent = obj
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        elif op == 2 and path and isinstance(path[-1], str):  # misspell a key
            parent = obj
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1] + rng.choice(["x", "_", "s"])] = parent.pop(path[-1])
        elif op == 3:  # wrap in a list
            parent_value = obj
            for key in path:
                parent_value = parent_value[key]
            obj = _set_at(obj, path, [parent_value])
        else:  # a many-digit number
            obj = _set_at(obj, path, "__BIG__")
    out = json.dumps(obj)
    return out.replace('"__BIG__"', "7" * rng.choice([20, 400, 5000]))


def mutate(kind: str, seed: int, original: bytes) -> bytes:
    """The mutated file for case ``seed`` of ``kind``."""
    rng = random.Random(f"{kind}:{seed}")
    if kind == "strategy-pb":
        return _mutate_bytes(rng, original)
    return _mutate_json(rng, original.decode()).encode("utf-8", "surrogateescape")


CHILD = r"""
import json, os, shutil, signal, sys, tempfile, traceback
sys.path.insert(0, {root!r})
from tests.format_fuzz import mutate
from ms_notebook.checkpoint import CheckpointError, open_checkpoint

kind, base, target, opened, seeds = {kind!r}, {base!r}, {target!r}, {opened!r}, {seeds!r}
original = open(os.path.join(base, target), "rb").read()

class Slow(Exception):
    pass

def alarm(signum, frame):
    raise Slow()

signal.signal(signal.SIGALRM, alarm)
work = tempfile.mkdtemp(prefix="fuzz-")
copy = os.path.join(work, "set")
shutil.copytree(base, copy, symlinks=True)
outcomes = {{}}
for seed in seeds:
    with open(os.path.join(copy, target), "wb") as f:
        f.write(mutate(kind, seed, original))
    signal.setitimer(signal.ITIMER_REAL, {case_s})
    try:
        ck = open_checkpoint(os.path.join(copy, opened))
        for name in ck:
            ck[name]
        outcome = "ok"
    except CheckpointError:
        outcome = "CheckpointError"
    except Slow:
        outcome = "timeout"
    except BaseException as exc:
        outcome = type(exc).__name__ + ": " + str(exc)[:300] + " @ " + traceback.format_exc()[-600:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    outcomes[seed] = outcome
shutil.rmtree(work, ignore_errors=True)
print("FUZZ " + json.dumps(outcomes))
"""


def run_cases(kind: str, base: Path, target: str, opened: str, seeds: list[int], *, case_s: float = 3.0,
              memory: int = 2 << 30, timeout_s: float = 600) -> dict[int, str]:
    """Outcome of each seed: "ok", "CheckpointError", "timeout", or the unexpected exception; a child that
    dies or runs out of time gives every seed it did not report "crash: ..."."""
    code = CHILD.format(root=str(ROOT), kind=kind, base=str(base), target=target, opened=opened,
                        seeds=list(seeds), case_s=case_s)  # fmt: skip

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOG_v": "3", "MS_NOTEBOOK_INDEX_CACHE": "off"}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              timeout=timeout_s, preexec_fn=cap)  # fmt: skip
    except subprocess.TimeoutExpired:
        return dict.fromkeys(seeds, f"crash: the child ran over {timeout_s} s")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("FUZZ ")), None)
    if line is None:
        return dict.fromkeys(seeds, f"crash: exit {proc.returncode}: {proc.stderr[-1500:]}")
    return {int(k): v for k, v in json.loads(line[5:]).items()}


def build_bases(folder: Path) -> dict[str, tuple[Path, str, str]]:
    """Real sets to mutate (MindSpore writes the rank files): kind -> (set folder, file to mutate, what to
    open inside the copy)."""
    import numpy as np

    from tests.set_support import L, write_rank_set
    from tests.test_checkpoint_sets_shards import _values, write_shards

    w = np.arange(48, dtype=np.float32).reshape(8, 6)
    b = np.arange(16, dtype=np.float32).reshape(4, 4)
    layouts = {"w": L([2, 2], [1, -1]), "b": L([2, 2], [[1, 0], -1])}
    extra = {"global_step": np.array([3], np.int32)}
    write_rank_set(folder / "pb", {"w": w, "b": b}, layouts, ranks=4, extra=extra)
    write_rank_set(folder / "json", {"w": w, "b": b}, layouts, ranks=4, extra=extra, strategy_form="json")
    write_shards(folder / "shards", _values())
    return {
        "strategy-pb": (folder / "pb", "strategy.ckpt", "."),
        "strategy-json": (folder / "json", "strategy.json", "."),
        "index-json": (folder / "shards", "model.safetensors.index.json", "model.safetensors.index.json"),
    }
