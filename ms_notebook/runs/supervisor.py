"""The small process ``launch`` runs msrun under: a child subreaper, so no descendant of the job escapes.

A process that calls ``setsid`` and execs with an empty environment escapes any sweep by session, process
group or environment marker: when its parent exits it is reparented to PID 1. Under a process that called
``prctl(PR_SET_CHILD_SUBREAPER, 1)`` (Linux >= 3.4) it is reparented to that process instead, so it stays a
descendant of the job's root, where the launcher's process scan (and this supervisor's own sweep) finds it.

Run as a file (``python supervisor.py CONTROL_DIR -- COMMAND...``), never imported by the job: it needs only
the standard library. It starts COMMAND, writes its pid to ``CONTROL_DIR/msrun.pid`` and, when it exits,
its exit code to ``CONTROL_DIR/msrun.exit``; it reaps every orphan it inherits; on SIGTERM, SIGINT or SIGHUP
it ends all its descendants (SIGTERM, then SIGKILL) and exits. It exits by itself, with COMMAND's exit code,
once COMMAND has exited and no descendant is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
PID_FILE = "msrun.pid"
EXIT_FILE = "msrun.exit"
TERM_WAIT_S = 2.0


def become_subreaper() -> bool:
    """Make this process the parent of its orphaned descendants; False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Pids of every living descendant of ``root`` (from /proc: each process's parent)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _reap() -> list[tuple[int, int]]:
    """Collect every exited child (ours or an adopted orphan) without waiting: [(pid, exit code)]."""
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, os.waitstatus_to_exitcode(status)))


def _end_all() -> None:
    me = os.getpid()
    for sig, wait in ((signal.SIGTERM, TERM_WAIT_S), (signal.SIGKILL, 5.0)):
        pids = descendants(me)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap()
            if not descendants(me):
                return
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: supervisor.py CONTROL_DIR -- COMMAND...", file=sys.stderr)
        return 2
    control, command = argv[0], argv[2:]
    if not become_subreaper():
        print("ms_notebook supervisor: PR_SET_CHILD_SUBREAPER is not available", file=sys.stderr)
    ending = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: ending.append(signum))
    child = subprocess.Popen(command)  # inherits stdio, environment and the session launch gave us
    _write(os.path.join(control, PID_FILE), str(child.pid))
    code: int | None = None
    while True:
        for pid, status in _reap():
            if pid == child.pid:
                code = status
                child.returncode = status  # reaped here, not by Popen
                _write(os.path.join(control, EXIT_FILE), str(status))
        if ending:
            _end_all()
            return 128 + ending[0] if code is None else code
        if code is not None and not descendants(os.getpid()):
            return code
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
