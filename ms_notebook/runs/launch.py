"""launch(): run a training script data-parallel under MindSpore's ``msrun``, from the notebook, and watch it.

``launch("train.py", workers=2)`` starts ``msrun --worker_num=2 --local_worker_num=2 --master_addr=127.0.0.1
--master_port=<free> --log_dir=<run>/logs --join=True train.py`` as a subprocess of the kernel and returns a
:class:`DistributedRun` at once. The notebook is the job's controller and window, not a scheduler of its own:

- every worker gets ``MS_NOTEBOOK_RUN_DIR``; ``LiveCurves()`` in the script writes rank 0's records into the
  run's ``metrics.jsonl``, which the run follows (``follow``'s machinery) for ``history`` and the live chart;
- ``stop()`` asks the ranks to stop after one common step and save ``rank_<r>/last.ckpt`` (the handshake of
  ``runs/worker.py``); after ``grace_s`` whatever remains is ended by process group;
- a failing rank is seen from the exit codes msrun reports (it polls its workers every second), the failing
  rank's traceback is read from its log, and the rest of the job is ended at once rather than after the
  scheduler's heartbeat timeout (which ``MS_NODE_TIMEOUT`` also shortens).

Why the process bookkeeping: msrun starts each worker in a session of its own, so ending msrun ends nothing
else (SIGTERM leaves the scheduler and the workers training; SIGINT ends them but msrun then exits 0, like a
success). So msrun runs under a small supervisor (``supervisor.py``) that is a child subreaper: a descendant
that leaves its session and environment behind is still reparented to it, not to PID 1. Every descendant of
the supervisor is recorded (psutil) as it appears, and ending the job ends each of their process groups and
the supervisor, which ends whatever it still holds; a last sweep ends any process still carrying this run's
folder in its environment. After ``wait()`` returns, no process of the job is left, whatever happened.

Only one launch may use a run folder: ``launch`` holds an exclusive lock on ``run_dir/.launch.lock`` while
the job lives and refuses a folder that already holds a job. A job counts as "finished" only if it trained
(a rank started training, or metrics came); one that exits before that, or that has not started training
within ``start_timeout_s``, is "failed" with that reason.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from ms_notebook.atomic import write_text

from . import supervisor
from .history import History, read_jsonl
from .jobdir import RUN_DIR_ENV, JobDir

STARTING, RUNNING, FINISHED, FAILED, STOPPED = "starting", "running", "finished", "failed", "stopped"
DONE = (FINISHED, FAILED, STOPPED)
POLL_S = 0.2
NODE_TIMEOUT_S = 10  # MS_NODE_TIMEOUT: the scheduler gives up on a silent worker after this (msrun: ~30 s)
TERM_WAIT_S = 2.0  # between SIGTERM and SIGKILL when ending processes
# workers still alive this long after the scheduler left with errors are stuck, not tearing down
SCHEDULER_GONE_GRACE_S = 10.0
START_TIMEOUT_S = 600.0  # no rank started training this long after launch: stuck before init(), failed
LOCK_FILE = ".launch.lock"
_WORKER_EXIT = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)")


class LaunchError(RuntimeError):
    """The job cannot be started as asked (nothing was started)."""


class PortInUseError(LaunchError):
    """The master port is taken on this machine."""


@dataclass
class RankFailure:
    """Why a job failed: which rank (or ``"scheduler"``/``"msrun"``), its exit code and its exception."""

    rank: int | str | None
    exit_code: int | None
    exception: str
    traceback: str = ""
    log_path: Path | None = None

    @property
    def who(self) -> str:
        return f"rank {self.rank}" if isinstance(self.rank, int) else str(self.rank or "the job")

    def __str__(self) -> str:
        code = f" (exit code {self.exit_code})" if self.exit_code is not None else ""
        where = f"\nlog: {self.log_path}" if self.log_path is not None else ""
        return f"{self.who} failed{code}: {self.exception}{where}"


def last_traceback(text: str) -> tuple[str, str] | None:
    """(exception line, traceback text) of the last Python traceback in a log, or None.

    MindSpore appends a "C++ Call Stack" section after its messages: the traceback ends before it.
    """
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    lines = text[start:].splitlines()
    out, exception = [lines[0]], ""
    for line in lines[1:]:
        if exception and (not line.strip() or line.startswith("-----")):
            break
        out.append(line)
        if not exception and line.strip() and not line[0].isspace():  # frames are indented; this is not
            exception = line.strip()
    return exception or out[-1].strip(), "\n".join(out)


def _read_tail(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - max_bytes, 0))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# -- ports --------------------------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """Raise ``PortInUseError`` if ``port`` is taken on ``host`` when ``host`` is this machine.

    The scheduler that msrun starts on the master node would fail to listen on it, and the workers would wait
    for it until msrun's cluster timeout. A ``host`` that is not an address of this machine (another node is
    the master) is not checked.
    """
    if not 1024 <= int(port) <= 65535:
        raise LaunchError(f"master_port must be in 1024..65535, got {port}")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"master port {port} on {host} is in use by another process: pass another master_port, "
                    "or leave it out and launch() picks a free one"
                ) from None
            if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                return  # not an address of this machine: the scheduler runs elsewhere
            raise LaunchError(f"cannot use master address {host}:{port}: {error}") from error


# -- processes ----------------------------------------------------------------------------------------------
@dataclass
class _Proc:
    process: psutil.Process
    pgid: int
    role: str  # "scheduler", "worker" or "other" (a worker's own children, tail -f, ...)
    rank: int | None
    created: float

    def alive(self) -> bool:
        try:
            return self.process.is_running() and self.process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _describe(process: psutil.Process, msrun_pid: int) -> tuple[str, int | None]:
    """("scheduler" | "worker" | "other", rank) from msrun's variables in the process's environment.

    Only msrun's direct children count: a worker's own children (dataset workers) and msrun's
    ``tail -f`` processes inherit the same variables.
    """
    try:
        if process.ppid() != msrun_pid or process.name().startswith("tail"):
            return "other", None
        env = process.environ()
    except psutil.Error:
        return "other", None
    role = env.get("MS_ROLE", "")
    if role == "MS_SCHED":
        return "scheduler", None
    if role == "MS_WORKER":
        rank = env.get("RANK_ID") or env.get("MS_NODE_ID")
        return "worker", int(rank) if rank and rank.isdigit() else None
    return "other", None


class _Processes:
    """Every process of the job, recorded as it appears, so that all of them can be ended."""

    def __init__(self, root: subprocess.Popen, msrun_pid: Callable[[], int | None] | None = None) -> None:
        self.root = root  # the supervisor (or msrun itself)
        self._msrun_pid = msrun_pid or (lambda: root.pid)
        self.records: dict[int, _Proc] = {}
        self.signalled: dict[int, int] = {}  # pid -> the last signal the launcher sent it
        self._own_pgid = os.getpgid(0)

    def scan(self) -> None:
        try:
            children = psutil.Process(self.root.pid).children(recursive=True)
        except psutil.Error:
            return
        msrun = self._msrun_pid() or -1
        for child in children:
            known = self.records.get(child.pid)
            if known is not None and known.process == child:
                young = time.time() - known.created < 5.0
                if young and (known.role == "other" or known.rank is None):  # before exec: msrun's environ
                    known.role, known.rank = _describe(child, msrun)
                    with contextlib.suppress(OSError):
                        known.pgid = os.getpgid(child.pid)  # setsid() happens between fork and exec too
                continue
            try:
                pgid = os.getpgid(child.pid)
                created = child.create_time()
            except (OSError, psutil.Error):
                continue
            role, rank = _describe(child, msrun)
            self.records[child.pid] = _Proc(child, pgid, role, rank, created)

    def workers(self) -> dict[int, _Proc]:
        return {p.rank: p for p in self.records.values() if p.role == "worker" and p.rank is not None}

    def scheduler(self) -> _Proc | None:
        return next((p for p in self.records.values() if p.role == "scheduler"), None)

    def rank_of(self, pid: int) -> int | None:
        record = self.records.get(pid)
        return record.rank if record is not None else None

    def alive(self) -> list[_Proc]:
        return [p for p in self.records.values() if p.alive()]

    def end(self, term_wait_s: float = TERM_WAIT_S) -> None:
        """SIGTERM every recorded process group and process (msrun's too), SIGKILL what is left."""
        self.scan()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            targets = [p for p in self.records.values() if p.alive()]
            root_alive = self.root.poll() is None
            if not targets and not root_alive:
                return
            for pgid in {p.pgid for p in targets} | ({self.root.pid} if root_alive else set()):
                if pgid != self._own_pgid:
                    with contextlib.suppress(OSError):
                        os.killpg(pgid, sig)
            for p in targets:
                self.signalled[p.process.pid] = int(sig)
                with contextlib.suppress(psutil.Error):
                    p.process.send_signal(sig)
            if root_alive:
                with contextlib.suppress(OSError):
                    self.root.send_signal(sig)
            deadline = time.monotonic() + (term_wait_s if sig == signal.SIGTERM else 10.0)
            while time.monotonic() < deadline:
                if self.root.poll() is not None and not any(p.alive() for p in targets):
                    break
                time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.root.wait(timeout=5)


def processes_with_run_dir(run_dir: str | Path) -> list[psutil.Process]:
    """Processes on this machine whose environment names ``run_dir`` as their job's folder."""
    wanted = str(Path(run_dir).resolve())
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(RUN_DIR_ENV) == wanted and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _sweep(run_dir: Path) -> None:
    """End any process still carrying this run's folder (one that escaped the recording)."""
    for process in processes_with_run_dir(run_dir):
        with contextlib.suppress(psutil.Error, OSError):
            os.killpg(os.getpgid(process.pid), signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            process.kill()


_LIVE: weakref.WeakSet[DistributedRun] = weakref.WeakSet()


@atexit.register
def _end_live_runs() -> None:  # the kernel exits: its jobs must not train on, unseen
    for run in list(_LIVE):
        with contextlib.suppress(Exception):
            run._end_now()


# -- the run ------------------------------------------------------------------------------------------------
class DistributedRun:
    """A data-parallel job under msrun, launched from this process: state, history, logs, stop, errors.

    ``state``: "starting" (processes up, no training step yet), "running", then "finished", "failed" or
    "stopped". ``wait()`` blocks until one of the last three and returns it. ``history`` is rank 0's
    metric log (a DataFrame, one row per step), ``log(rank)`` a rank's log, ``error`` a :class:`RankFailure`,
    ``returncodes`` {rank: exit code} (0: exited cleanly; negative: ended by that signal; None: unknown,
    e.g. ended by msrun after another rank failed), ``run_dir`` the job's folder.
    """

    def __init__(self, command: list[str], env: dict[str, str], run_dir: Path, cwd: Path, *,
                 script: Path, workers: int, worker_num: int, master_addr: str, master_port: int,
                 node_rank: int | None, grace_s: float, start_timeout_s: float | None = START_TIMEOUT_S,
                 lock_fd: int | None = None) -> None:
        from .curves import LiveCurves

        self.command = command
        self.run_dir = run_dir
        self.dir = JobDir(run_dir)
        self.script = script
        self.workers = workers
        self.worker_num = worker_num
        self.master_addr = master_addr
        self.master_port = master_port
        self.node_rank = node_rank
        self.grace_s = grace_s
        self.start_timeout_s = start_timeout_s
        self._lock_fd = lock_fd
        self.state = STARTING
        self.error: RankFailure | None = None
        self.returncodes: dict[int, int | None] = {}
        self.returncode: int | None = None  # msrun's own
        self.started_at = time.time()
        self.first_step_at: float | None = None
        self.ended_at: float | None = None
        self.stop_requested_at: float | None = None
        self.curves = LiveCurves(label=script.stem, display=False)
        self._listeners: list[Callable[[str, DistributedRun], None]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._stop_deadline: float | None = None
        self._exit_codes: dict[int, int] = {}  # pid -> code, as msrun reports failed workers
        self._scheduler_gone_at: float | None = None  # monotonic time it was first seen gone
        self._msrun_offset = 0

        self.dir.logs.mkdir(parents=True, exist_ok=True)
        self.dir.control.mkdir(parents=True, exist_ok=True)
        write_text(self.dir.job_file, json.dumps({
            "command": command, "cwd": str(cwd), "script": str(script), "workers": workers,
            "worker_num": worker_num, "master_addr": master_addr, "master_port": master_port,
            "node_rank": node_rank, "started": self.started_at,
        }, indent=1))
        for stale in (supervisor.PID_FILE, supervisor.EXIT_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.dir.control / stale).unlink()
        supervised = [sys.executable, supervisor.__file__, str(self.dir.control), "--", *command]
        with open(self.dir.msrun_log, "wb") as log:
            self._msrun = subprocess.Popen(  # the supervisor, msrun's parent; ``returncode`` is msrun's
                supervised, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: ending it never touches the kernel's
            )
        self._procs = _Processes(self._msrun, self._msrun_pid)
        from .curves import Follower

        self._follower = Follower(self.dir.metrics, timeout=float("inf"), poll_s=0.5, curves=self.curves)
        self._follower.start()
        _LIVE.add(self)
        self._thread = threading.Thread(target=self._monitor, name=f"msrun-{run_dir.name}", daemon=True)
        self._thread.start()

    # -- reading -------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state in DONE

    @property
    def history(self) -> pd.DataFrame:
        """Rank 0's records, one row per step (epoch metrics on each epoch's last step)."""
        if not self.dir.metrics.exists():
            return History(self.curves.history_obj.label).frame()
        return History.from_records(read_jsonl(self.dir.metrics), self.curves.history_obj.label).frame()

    def log(self, rank: int | str = 0) -> str:
        """The whole log of worker ``rank`` (``"scheduler"``: the scheduler's, ``"msrun"``: msrun's own)."""
        path = self.dir.msrun_log if rank == "msrun" else self.dir.worker_log(rank)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, rank: int | str = 0, lines: int = 20) -> str:
        """The last ``lines`` lines of a log (reads only its end)."""
        path = self.dir.msrun_log if rank == "msrun" else self.dir.worker_log(rank)
        return "\n".join(_read_tail(path, 16_384).splitlines()[-lines:])

    def ranks(self) -> list[int]:
        """Global ranks of the workers on this machine (by their log files once msrun named them)."""
        found = sorted(int(p.stem.split("_")[1]) for p in self.dir.logs.glob("worker_*.log")
                       if p.stem.split("_")[1].isdigit())
        if found:
            return found
        first = (self.node_rank or 0) * self.workers if self.worker_num > self.workers else 0
        return list(range(first, first + self.workers))

    def checkpoints(self) -> dict[int, Path]:
        """{rank: its last.ckpt} for the ranks that saved one."""
        return {r: self.dir.last_checkpoint(r) for r in self.ranks() if self.dir.last_checkpoint(r).exists()}

    def progress(self) -> dict[str, Any]:
        """Epoch, step, total steps and fraction of rank 0, its steps per second and the time since launch."""
        records = self.curves.records()
        begin = next((r for r in records if r.get("type") == "begin"), {})
        latest = self.curves.history_obj.latest()
        epochs, per_epoch = int(begin.get("epochs") or 0), int(begin.get("steps_per_epoch") or 0)
        step = int(latest.get("step") or 0)
        total = epochs * per_epoch
        rate = float(latest.get("steps_per_s") or 0.0)
        return {
            "epoch": int(latest.get("epoch") or 0), "epochs": epochs, "step": step, "total": total,
            "fraction": min(step / total, 1.0) if total else 0.0, "steps_per_s": rate,
            "eta_s": (total - step) / rate if rate > 0 and total and not self.done else None,
            "elapsed_s": (self.ended_at or time.time()) - self.started_at,
        }

    def add_listener(self, listener: Callable[[str, DistributedRun], None]) -> None:
        """Call ``listener(event, run)`` on "state" changes and about once a second ("tick"), from the
        monitoring thread (keep it cheap)."""
        self._listeners.append(listener)

    def __repr__(self) -> str:
        p = self.progress()
        where = f"step {p['step']}/{p['total']}" if p["total"] else "no step yet"
        name = f"{self.script.name} x{self.worker_num}"
        return f"<DistributedRun {name}: {self.state}, {where}, {self.run_dir}>"

    # -- control -------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> str:
        """Block until the job has ended (or ``timeout`` seconds); return the state."""
        self._done.wait(timeout)
        return self.state

    def stop(self, grace_s: float | None = None) -> None:
        """Ask every rank to stop after one common step and save its last checkpoint; returns at once.

        After ``grace_s`` (default: the launch's) whatever remains is ended by process group. Before any rank
        has started training there is nothing to save, so the job is ended right away.
        """
        with self._lock:
            if self.done or self.stop_requested_at is not None:
                return
            self.stop_requested_at = time.time()
            write_text(self.dir.stop_file, json.dumps({"requested": self.stop_requested_at}))
            grace = self.grace_s if grace_s is None else float(grace_s)
            started = bool(self.dir.started())
            self._stop_deadline = time.monotonic() + (grace if started else 0.0)
        self._notify("state")

    def _end_now(self) -> None:
        self._procs.end()
        _sweep(self.run_dir)

    def _msrun_pid(self) -> int | None:
        """msrun's pid, as the supervisor wrote it (None until then)."""
        try:
            return int((self.dir.control / supervisor.PID_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _msrun_exit(self) -> int | None:
        """msrun's exit code once it has exited (the supervisor writes it; its own code if it is gone)."""
        try:
            return int((self.dir.control / supervisor.EXIT_FILE).read_text())
        except (OSError, ValueError):
            return self._msrun.poll()

    def _trained(self) -> bool:
        """Whether any rank started training (its start record) or any metric record came."""
        return bool(self.dir.started()) or len(self.curves.history_obj) > 0 or self._metrics_written()

    def _metrics_written(self) -> bool:
        try:
            return self.dir.metrics.stat().st_size > 0
        except OSError:
            return False

    # -- monitoring (its own thread) -----------------------------------------------------------------
    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):  # a broken view must not stop the monitoring
                listener(event, self)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._notify("state")

    def _read_msrun_output(self) -> None:
        chunk = ""
        with contextlib.suppress(FileNotFoundError), open(self.dir.msrun_log, "rb") as handle:
            handle.seek(self._msrun_offset)
            data = handle.read()
            cut = data.rfind(b"\n") + 1  # only whole lines
            self._msrun_offset += cut
            chunk = data[:cut].decode("utf-8", errors="replace")
        for pid, code in _WORKER_EXIT.findall(chunk):
            self._exit_codes[int(pid)] = int(code)

    def _rank_failure(self, rank: int | str, exit_code: int | None) -> RankFailure:
        log_path = self.dir.worker_log(rank)
        found = last_traceback(_read_tail(log_path, 65_536))
        if found is None:
            tail = self.log_tail(rank, 5).strip() or "(its log is empty)"
            return RankFailure(rank, exit_code, f"no Python traceback in its log; it ends with:\n{tail}",
                               "", log_path)
        exception, text = found
        return RankFailure(rank, exit_code, exception, text, log_path)

    def _find_failure(self) -> RankFailure | None:
        """A failure seen now: a worker msrun reported, a rank without init(), a dead scheduler."""
        for pid, code in self._exit_codes.items():
            rank = self._procs.rank_of(pid)
            if rank is None:  # exited before it was recorded: the rank whose log holds a traceback
                rank = next((r for r in self.ranks() if "Traceback" in _read_tail(self.dir.worker_log(r),
                                                                                     65_536)), None)
            if rank is None:
                return RankFailure(None, code, f"a worker (pid {pid}) exited with code {code}")
            return self._rank_failure(rank, code)
        for rank, record in sorted(self.dir.started().items()):
            if not record.get("initialized", True):
                return RankFailure(rank, None, (
                    "the script started training without calling mindspore.communication.init(): every "
                    f"worker (and msrun's scheduler) would train alone instead of one data-parallel job of "
                    f"{self.worker_num}. Call init() and set_auto_parallel_context(parallel_mode="
                    "ParallelMode.DATA_PARALLEL, gradients_mean=True) before building the dataset and the "
                    "Model (TransferPlan.to_script writes such a script)."
                ), "", self.dir.worker_log(rank))
        return self._scheduler_failure()

    def _scheduler_failure(self) -> RankFailure | None:
        """The scheduler could not listen on its port, or it died with errors while its workers wait.

        The port failure is read from its log, not from its exit: such a scheduler can linger in MindSpore's
        teardown while the workers wait for it until the cluster timeout. Any other traceback counts only
        once the scheduler has been gone for ``SCHEDULER_GONE_GRACE_S`` while workers live on: the scheduler
        runs the script up to ``init()``, a script may print a traceback it handled, and at a job's normal end
        the workers tear down for a few seconds after the scheduler has left.
        """
        text = _read_tail(self.dir.worker_log("scheduler"), 65_536)
        if not text:
            return None
        lowered = text.lower()
        listen_failed = any(f"failed to {verb} the tcp server" in lowered for verb in ("init", "create"))
        if not listen_failed:
            scheduler = self._procs.scheduler()
            if scheduler is None or scheduler.alive():
                return None
            if "Traceback (most recent call last):" not in text and "[ERROR]" not in text:
                return None
            if not any(p.alive() for p in self._procs.workers().values()):
                return None  # a scheduler gone after its workers: the job's own end, msrun says how it went
            now = time.monotonic()
            if self._scheduler_gone_at is None:
                self._scheduler_gone_at = now
            if now - self._scheduler_gone_at < SCHEDULER_GONE_GRACE_S:
                return None  # workers finishing their teardown, or about to fail by themselves
            for rank in self.ranks():  # a worker that raised first is the cause
                if "Traceback" in _read_tail(self.dir.worker_log(rank), 65_536):
                    return self._rank_failure(rank, None)
        failure = self._rank_failure("scheduler", None)
        if listen_failed:
            failure.exception = (f"the scheduler could not listen on {self.master_addr}:"
                                 f"{self.master_port} (port in use?): {failure.exception}")
        return failure

    def _job_processes_gone(self) -> bool:
        """Every worker and the scheduler recorded so far have exited (and there was at least one)."""
        ranks = [p for p in self._procs.records.values() if p.role in ("worker", "scheduler")]
        return bool(ranks) and not any(p.alive() for p in ranks)

    def _monitor(self) -> None:
        failure: RankFailure | None = None
        last_tick = 0.0
        try:
            while True:
                self._procs.scan()
                self._read_msrun_output()
                if self.state == STARTING and len(self.curves.history_obj):
                    self.first_step_at = time.time()
                    self._set_state(RUNNING)
                if failure is None and self.stop_requested_at is None:
                    failure = self._find_failure()
                    if failure is not None:
                        break
                if self._stop_deadline is not None and (time.monotonic() >= self._stop_deadline
                                                        or self._job_processes_gone()):
                    break  # after a stop msrun's own exit (it polls once a second) tells nothing more
                if failure is None and self.stop_requested_at is None and self._start_timed_out():
                    failure = RankFailure(None, None, (
                        f"no rank started training within {self.start_timeout_s:g} s (start_timeout_s): the "
                        "script is stuck before init() or its first step"))
                    break
                if self._msrun_exit() is not None:
                    break
                now = time.monotonic()
                if now - last_tick >= 1.0:
                    last_tick = now
                    self._notify("tick")
                time.sleep(POLL_S)
        finally:
            self._finish(failure)

    def _start_timed_out(self) -> bool:
        if self.start_timeout_s is None or self.state != STARTING:
            return False
        return time.time() - self.started_at > self.start_timeout_s and not self._trained()

    def _finish(self, failure: RankFailure | None) -> None:
        """End what remains, settle state, error and return codes, then release ``wait()``."""
        try:
            self._procs.end()
            _sweep(self.run_dir)
            self._read_msrun_output()
            self.returncode = self._msrun_exit()
            self._follower.wait(1.0 if self.dir.metrics.exists() else 0.0)
            self._follower.stop()
            self._follower.wait(2.0)
            ranks = self.ranks()
            codes: dict[int, int | None] = dict.fromkeys(ranks)
            if self.returncode == 0 and not self._procs.signalled:
                codes = dict.fromkeys(ranks, 0)  # msrun saw every worker exit with 0
            workers = self._procs.workers()
            for rank, record in workers.items():
                if record.process.pid in self._procs.signalled:
                    codes[rank] = -self._procs.signalled[record.process.pid]
            for pid, code in self._exit_codes.items():
                rank = self._procs.rank_of(pid)
                if rank is not None:
                    codes[rank] = code
            if failure is None and self.stop_requested_at is None and self.returncode != 0:
                failure = self._find_failure() or self._failure_from_logs()
            if failure is None and self.stop_requested_at is None and not self._trained():
                failure = RankFailure(None, self.returncode, (
                    "the job ended without training: no rank reached init() and its first step (no start "
                    "record, no metrics). A script that trains without LiveCurves can add JobControl() to "
                    "its callbacks"), "", self.dir.msrun_log)
            if self.stop_requested_at is not None:
                # ranks that saw the stop and saved their checkpoint exited by themselves with status 0
                for rank in self.dir.acks():
                    if self.dir.last_checkpoint(rank).exists() and codes.get(rank) is None:
                        codes[rank] = 0
            self.returncodes = codes
            self.error = failure
            self.ended_at = time.time()
            if failure is not None:
                state = FAILED
            elif self.stop_requested_at is not None or self.dir.acks():
                state = STOPPED  # asked here, or (another machine's Stop) the ranks here answered one
            else:
                state = FINISHED
            self._set_state(state)
        finally:
            _LIVE.discard(self)
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)  # free again (it holds a job now: launch refuses it)
                self._lock_fd = None
            self._done.set()

    def _failure_from_logs(self) -> RankFailure:
        for rank in self.ranks():
            if "Traceback" in _read_tail(self.dir.worker_log(rank), 65_536):
                return self._rank_failure(rank, None)
        found = last_traceback(_read_tail(self.dir.msrun_log, 65_536))
        tail = self.log_tail("msrun", 5).strip()
        return RankFailure("msrun", self.returncode, found[0] if found else (tail or "no output"),
                           found[1] if found else "", self.dir.msrun_log)


def _default_run_dir(script: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path.cwd() / "runs" / f"{script.stem}-{stamp}-{uuid.uuid4().hex[:4]}"


def msrun_command(script: Path, script_args: Iterable[str], *, workers: int, worker_num: int,
                  master_addr: str, master_port: int, log_dir: Path, node_rank: int | None = None,
                  cluster_timeout_s: int | None = None) -> list[str]:
    """The msrun command line (msrun's own entry point, run by this interpreter)."""
    command = [
        sys.executable, "-m", "mindspore.parallel.cluster.run",
        f"--worker_num={worker_num}", f"--local_worker_num={workers}", f"--master_addr={master_addr}",
        f"--master_port={master_port}", f"--log_dir={log_dir}", "--join=True",
    ]
    if node_rank is not None:
        command.append(f"--node_rank={node_rank}")
    if cluster_timeout_s is not None:
        command.append(f"--cluster_time_out={int(cluster_timeout_s)}")
    return [*command, str(script), *map(str, script_args)]


def launch(
    script: str | os.PathLike[str],
    *script_args: Any,
    workers: int = 2,
    run_dir: str | os.PathLike[str] | None = None,
    master_port: int | None = None,
    env: dict[str, str] | None = None,
    master_addr: str = "127.0.0.1",
    worker_num: int | None = None,
    node_rank: int | None = None,
    grace_s: float = 20.0,
    node_timeout_s: int = NODE_TIMEOUT_S,
    cluster_timeout_s: int | None = None,
    cwd: str | os.PathLike[str] | None = None,
    start_timeout_s: float | None = START_TIMEOUT_S,
) -> DistributedRun:
    """Start ``script`` data-parallel under msrun on ``workers`` processes here; return at once.

    Args:
        script, script_args: the training script and its arguments (``sys.argv[1:]`` in every worker).
        workers: worker processes on this machine (msrun's ``--local_worker_num``).
        run_dir: the job's folder (logs, metrics, ``rank_<r>/`` checkpoints); default
            ``./runs/<script>-<time>-<id>``. Workers find it in ``$MS_NOTEBOOK_RUN_DIR``.
        master_port: the scheduler's port; default a free one. A port in use raises ``PortInUseError``.
        env: extra environment variables for the workers.
        master_addr, worker_num, node_rank: several machines. Run ``launch`` on each with the same
            ``master_addr`` (the machine whose scheduler the others join: it runs there) and ``master_port``,
            ``worker_num`` = all workers of all machines, ``workers`` = this machine's, and ``node_rank``
            = this machine's index (0 on the master), so its ranks are ``node_rank * workers + i``.
            Without ``node_rank`` MindSpore assigns ranks when the cluster forms. Only one machine is tested.
        grace_s: after ``stop()``, how long the ranks have to stop and save before they are ended.
        node_timeout_s: ``MS_NODE_TIMEOUT``, how long the scheduler waits for a silent worker.
        cluster_timeout_s: msrun's ``--cluster_time_out`` (waiting for all workers to join; msrun: 600 s).
        cwd: the workers' working directory (default: this process's).
        start_timeout_s: a job in which no rank has started training this long after launch is ended and
            "failed" (stuck before ``init()``); None waits for ever.
    """
    script_path = Path(script).expanduser().resolve()
    if not script_path.is_file():
        raise LaunchError(f"training script {script_path} does not exist")
    if not isinstance(workers, int) or workers < 1:
        raise LaunchError(f"workers must be a positive integer, got {workers!r}")
    total = workers if worker_num is None else int(worker_num)
    if total < workers:
        raise LaunchError(f"worker_num ({total}) counts all machines' workers: it cannot be below workers "
                          f"({workers})")
    if node_rank is not None and not 0 <= int(node_rank) < max(total // workers, 1):
        raise LaunchError(f"node_rank must be in 0..{max(total // workers, 1) - 1}, got {node_rank}")
    workdir = Path(cwd).expanduser().resolve() if cwd is not None else Path.cwd()
    if not workdir.is_dir():
        raise LaunchError(f"working directory {workdir} does not exist")
    if master_port is None:
        try:
            port = free_port("127.0.0.1" if master_addr == "localhost" else master_addr)
        except OSError:
            raise LaunchError(f"{master_addr} is not an address of this machine: pass the master's "
                              "master_port (the same on every machine)") from None
    else:
        port = int(master_port)
        check_port(master_addr, port)
    if start_timeout_s is not None and not float(start_timeout_s) > 0:
        raise LaunchError(f"start_timeout_s must be positive seconds or None, got {start_timeout_s!r}")
    folder = Path(run_dir).expanduser().resolve() if run_dir is not None else _default_run_dir(script_path)
    if JobDir(folder).job_file.exists():
        raise LaunchError(f"{folder} already holds a launched job: choose a new run_dir")
    folder.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock_run_dir(folder)

    job_env = dict(os.environ)
    job_env.update({str(k): str(v) for k, v in (env or {}).items()})
    # msrun starts workers as the bare name `python`: this kernel's interpreter must come first.
    job_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), job_env.get("PATH", "")])
    job_env[RUN_DIR_ENV] = str(folder)
    job_env.setdefault("MS_NODE_TIMEOUT", str(int(node_timeout_s)))
    job_env.setdefault("PYTHONUNBUFFERED", "1")  # logs readable while the job runs
    job_env.setdefault("GLOG_v", "3")
    job_env["MPLBACKEND"] = (env or {}).get("MPLBACKEND", "Agg")  # not the kernel's inline backend
    command = msrun_command(script_path, script_args, workers=workers, worker_num=total,
                            master_addr=master_addr, master_port=port, log_dir=JobDir(folder).logs,
                            node_rank=node_rank, cluster_timeout_s=cluster_timeout_s)
    try:
        return DistributedRun(command, job_env, folder, workdir, script=script_path, workers=workers,
                              worker_num=total, master_addr=master_addr, master_port=port,
                              node_rank=None if node_rank is None else int(node_rank), grace_s=grace_s,
                              start_timeout_s=None if start_timeout_s is None else float(start_timeout_s),
                              lock_fd=lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def _lock_run_dir(folder: Path) -> int:
    """An exclusive lock on ``folder`` for this job's life (the descriptor); LaunchError if another launch
    holds it or the folder already holds a job (checked again under the lock: two launches may race)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LaunchError(f"{folder} is in use by another launch: choose a new run_dir") from None
    if JobDir(folder).job_file.exists():
        os.close(fd)
        raise LaunchError(f"{folder} already holds a launched job: choose a new run_dir")
    return fd
