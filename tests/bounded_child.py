"""Run hostile input through our code in a child process with a memory cap and a timeout, so a case that
used to hang or blow up fails its test instead of taking the test run (or the machine) with it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CAP = 2 << 30  # bytes of address space for the child

_PRELUDE = """
import json, sys, traceback
from ms_notebook.checkpoint import CheckpointError
def _report(fn):
    try:
        value = fn()
    except CheckpointError as exc:
        print(json.dumps({"outcome": "CheckpointError", "message": str(exc), "path": exc.path}))
    except Exception as exc:
        print(json.dumps({"outcome": type(exc).__name__, "message": str(exc)[:2000],
                          "traceback": traceback.format_exc()[-4000:]}))
    else:
        print(json.dumps({"outcome": "ok", "value": value}, default=str))
"""


def run_bounded(body: str, timeout_s: float = 30, memory: int = MEMORY_CAP, **env: str) -> dict:
    """Run ``body`` (Python that calls ``_report(lambda: ...)`` once) in a child capped at ``memory`` bytes
    of address space and ``timeout_s`` seconds; return what ``_report`` printed ({"outcome": "ok" |
    "CheckpointError" | the exception's type, "message": ...}), or {"outcome": "timeout" | "crash", ...}."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "GLOG_v": "3", **env}

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        proc = subprocess.run([sys.executable, "-c", _PRELUDE + body], cwd=ROOT, env=environ,
                              capture_output=True, text=True, timeout=timeout_s, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "message": f"no answer within {timeout_s} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"outcome": "crash", "message": f"exit {proc.returncode}: {proc.stderr[-3000:]}"}
    return json.loads(lines[-1])
