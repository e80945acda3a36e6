"""follow() on what is not a growing log: a FIFO with no writer, a link to /dev/zero, a gigantic line with
no newline. It honours its timeout, holds at most about MAX_LINE_BYTES of a line, and reads only regular
files (each case in a child process with a timeout and a memory cap: these used to hang or take GBs)."""

from __future__ import annotations

import json
import os

from tests.bounded_child import run_bounded

MEMORY = 6 << 30  # address space for a child that imports MindSpore (the runs layer needs it)


def _follow(path, timeout: float) -> dict:
    return run_bounded(
        "import resource, time\n"
        "from ms_notebook.runs.curves import follow\n"
        "def go():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    start = time.monotonic()\n"
        f"    f = follow({str(path)!r}, timeout={timeout}, poll_s=0.05, block=True, display=False)\n"
        "    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "    return {'reason': f.reason, 'steps': f.history['step'].tolist() if len(f.history) else [],\n"
        "            'skipped': f.skipped, 'last_skipped': f.last_skipped, 'grew_mb': grew / 1024,\n"
        "            'seconds': time.monotonic() - start}\n"
        "_report(go)\n",
        timeout_s=90, memory=MEMORY,
    )


def test_a_fifo_is_waited_out_until_the_timeout(tmp_path):
    os.mkfifo(tmp_path / "job.jsonl")
    result = _follow(tmp_path / "job.jsonl", timeout=1.0)
    assert result["outcome"] == "ok", result
    assert result["value"]["reason"] == "timeout"
    assert "not a regular file" in result["value"]["last_skipped"]


def test_a_link_to_dev_zero_is_not_read(tmp_path):
    (tmp_path / "job.jsonl").symlink_to("/dev/zero")
    result = _follow(tmp_path / "job.jsonl", timeout=1.0)
    assert result["outcome"] == "ok", result
    assert result["value"]["reason"] == "timeout" and result["value"]["grew_mb"] < 64, result


def test_a_line_of_a_hundred_megabytes_is_dropped_as_it_is_read(tmp_path):
    path = tmp_path / "job.jsonl"
    with open(path, "wb") as f:
        f.write((json.dumps({"type": "step", "epoch": 1, "step": 1, "loss": 1.0}) + "\n").encode())
        block = b"x" * (1 << 20)
        for _ in range(100):
            f.write(block)
        f.write(b"\n" + (json.dumps({"type": "step", "epoch": 1, "step": 2, "loss": 0.5}) + "\n").encode())
        f.write(b'{"type": "end"}\n')
    result = _follow(path, timeout=30)
    assert result["outcome"] == "ok", result
    value = result["value"]
    assert value["reason"] == "end" and value["steps"] == [1, 2] and value["skipped"] == 1, value
    assert value["grew_mb"] < 60, value  # the old reader held the whole line (and copies of it)
