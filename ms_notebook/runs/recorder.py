"""Recorder: one run's metric history, fed from any training loop. No MindSpore, no widgets.

Every way in is a thin adapter over the same core, so all of them share the history, the JSON-lines file, the
NaN guard, progress and ETA, Stop, and (through the hooks a view overrides) the live chart and final figure:

* your own loop (MindSpore 2.x's ``value_and_grad`` + ``train_step`` style)::

      with LiveCurves() as curves:
          for epoch in range(epochs):
              for data, label in curves.steps(dataset.create_tuple_iterator()):
                  curves.log(loss=train_step(data, label))
              curves.log_epoch(accuracy=evaluate())

* ``Model.train``/``Model.fit`` through the ``Callback`` adapter (``LiveCurves`` is also a ``Callback``);
* a worker's JSON lines, read back by ``follow``.

Stop (``stop()``, the chart's button, or the kernel's interrupt during ``steps()``) ends ``steps()`` cleanly
at the next step boundary; ``stop_requested`` tells loops that do not use ``steps()``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ms_notebook.atomic import replacing

from .handshake import current_handshake
from .history import History, json_line
from .progress import RunProgress

RUNNING, STOPPING, STOPPED, FINISHED, FAILED = "running", "stopping", "stopped", "finished", "failed"


def scalar(value: Any) -> float:
    """A loss or metric as a float: a MindSpore/NumPy tensor of one element, a NumPy scalar or a number."""
    if isinstance(value, tuple | list):  # (loss, logits) as a train_step may return
        value = value[0]
    if hasattr(value, "asnumpy"):
        value = value.asnumpy()
    if hasattr(value, "reshape") and hasattr(value, "size"):
        if value.size != 1:
            raise ValueError(f"a loss must be one number, got an array of shape {tuple(value.shape)}")
        value = value.reshape(-1)[0]
    return float(value)


def dataset_length(iterable: Any) -> int:
    """How many items ``iterable`` yields when it says so (``get_dataset_size()``, ``len()``), else 0."""
    for probe in ("get_dataset_size", "__len__"):
        method = getattr(iterable, probe, None)
        if method is None:
            continue
        try:
            size = int(method())
        except Exception:  # an iterator without a known size
            continue
        if size > 0:
            return size
    # a tuple iterator of a MindSpore dataset knows its dataset
    dataset = getattr(iterable, "dataset", None)
    if dataset is not None and dataset is not iterable:
        return dataset_length(dataset)
    return 0


class Recorder:
    """One run's history and everything that reads it, fed by ``log``/``log_epoch``/``steps`` or adapters.

    Args:
        label: name of this run in legends and overlays.
        log_path: also append the records as JSON Lines to this file (read by ``follow``).
        stop_on_nonfinite: a NaN or infinite loss stops the run at the next step boundary (default), with a
            message saying where; ``False`` records it and trains on.
        run_dir: where ``save_checkpoint`` writes ``last.ckpt``/``best.ckpt`` by default.
        epochs: how many epochs the loop will run, when known: progress and ETA then cover the whole run.
    """

    def __init__(
        self,
        label: str = "run",
        log_path: str | Path | None = None,
        stop_on_nonfinite: bool = True,
        run_dir: str | Path | None = None,
        epochs: int | None = None,
        net: Any = None,
    ) -> None:
        self.history_obj = History(label)
        self.log_path = Path(log_path) if log_path is not None else None
        self.stop_on_nonfinite = stop_on_nonfinite
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.planned_epochs = int(epochs) if epochs else 0
        self.net = net  # for checkpoints: the job's per-rank last.ckpt, save_checkpoint() without a net
        self.state: str | None = None  # None before the first run, then RUNNING … FINISHED/STOPPED/FAILED
        self.stop_reason: str | None = None
        self.notice: str | None = None  # what the last run wants said (a non-finite loss, a stop)
        self.nonfinite: list[dict[str, Any]] = []  # the steps whose loss was not finite, in this run
        self.checkpoints: Any = None  # RunCheckpoints of save_checkpoint(), created on first use
        self.progress_obj = RunProgress()
        self._records: list[dict[str, Any]] = []
        self._log: Any = None
        self._log_flushed = 0.0
        self._listeners: list[Any] = []
        self._stop = threading.Event()
        self._step_offset = 0
        self._epoch_offset = 0
        self._t0 = 0.0
        self._last_step_time = 0.0
        self._rate = 0.0
        self._steps_timed = 0
        self._lr: float | None = None
        self._epoch_losses: list[float] = []
        self._training = False
        self._handshake = current_handshake()  # None outside an ms_notebook.launch job
        self._hold = 0  # > 0 inside one_run(): several train() calls make one run
        self._held_end = False
        self.phase: str | None = None  # named in the "phase" record that starts the next held train() call
        # the functional loop's position: current epoch (absolute), last step, and whether log() ran this step
        self._epoch = 0
        self._epoch_closed = True
        self._step = 0
        self._logged = False
        self._steps_per_epoch = 0
        self._functional_run = False  # the run was begun by log()/steps(): a `with` block ends it
        self._rearm: Any = _no_rearm  # puts the loop's SIGINT handler back after MindSpore ran a step
        self._foreground_steps = False  # steps() runs on the main thread: an interrupt is a Stop there
        self._job_saved = False  # this rank's last.ckpt of a launch job is written

    # -- readers -------------------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """One row per training step; epoch columns (train_loss, eval_*) filled on each epoch's last step."""
        return self.history_obj.frame()

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per epoch with its metrics."""
        return self.history_obj.epochs()

    def records(self) -> list[dict[str, Any]]:
        """All records so far (the JSON-lines schema)."""
        return list(self._records)

    def progress(self) -> dict[str, Any]:
        """Step, total, fraction, moving-window steps per second and ETA of the current or last run."""
        return self.progress_obj.snapshot()

    @property
    def stop_requested(self) -> bool:
        """Whether Stop was asked for (button, ``stop()``, kernel interrupt, a non-finite loss, a job)."""
        return self._stop.is_set()

    def to_csv(self, path: str | Path) -> Path:
        """Write ``history`` as CSV atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        with replacing(path) as tmp:
            self.history.to_csv(tmp, index=False)
        return path

    def add_listener(self, listener: Any) -> None:
        """Call ``listener(record)`` on the training thread for each record (keep it cheap)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        """Stop calling ``listener`` (a new list: a record being delivered on the training thread is safe)."""
        self._listeners = [known for known in self._listeners if known is not listener]

    # -- hooks a view overrides (LiveCurves draws; the plain recorder does nothing) -----------------------
    def _view_start(self) -> None:
        """A run began."""

    def _view_update(self, force: bool = False) -> None:
        """New records (throttled by the view unless ``force``)."""

    def _view_finish(self) -> None:
        """The run ended (its status is ``state``)."""

    # -- the core every adapter feeds -----------------------------------------------------------------
    def _emit(self, record: dict[str, Any]) -> None:
        self._records.append(record)
        self.history_obj.apply(record)
        if self._log is not None:
            self._log.write(json_line(record))  # strict JSON: a NaN loss is written as null
            now = time.monotonic()
            if record["type"] != "step" or now - self._log_flushed > 0.5:
                self._log.flush()
                self._log_flushed = now
        for listener in self._listeners:
            listener(record)
        self._view_update(force=record["type"] != "step")

    def _begin_run(self, epochs: int = 0, steps_per_epoch: int = 0) -> None:
        """A run (or the next phase of a held one) starts."""
        self._training = True
        held = self._held_end
        if not held:
            self._stop.clear()
            self.stop_reason = self.notice = None
            self.nonfinite = []
        if self._handshake is not None and self.log_path is None:
            self.log_path = self._handshake.job.metrics_path
        if self.log_path is not None and self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a" if self._records else "w", encoding="utf-8")  # noqa: SIM115
        latest = self.history_obj.latest()
        if self._records:  # a second run continues the same history
            self._step_offset = int(latest.get("step") or 0)
            self._epoch_offset = int(latest.get("epoch") or 0)
        self._step, self._epoch, self._epoch_closed = self._step_offset, self._epoch_offset, True
        self._t0 = self._last_step_time = time.perf_counter()
        self._steps_timed = 0
        epochs = int(epochs or self.planned_epochs or 0)
        self._steps_per_epoch = int(steps_per_epoch or 0)
        self.progress_obj.begin(epochs, self._steps_per_epoch, self._epoch_offset, self._step_offset)
        self.state = RUNNING
        sizes = {"epochs": epochs, "steps_per_epoch": self._steps_per_epoch}
        if held:  # the next phase of one run (one_run())
            self._held_end = False
            self._emit({"type": "phase", "phase": self.phase or "", "time": time.time(), **sizes})
        else:
            self._emit({"type": "begin", "label": self.history_obj.label, "time": time.time(), **sizes})
        if self._handshake is not None:
            self._handshake.begin(epochs, self._steps_per_epoch, self._step_offset)
        self._view_start()

    def _record_step(self, loss: float, epoch: int, step: int, lr: float | None = None,
                     extra: dict[str, Any] | None = None) -> bool:
        """One training step ended; True when the run must stop now (a job's agreed step)."""
        now = time.perf_counter()
        dt = now - self._last_step_time
        self._last_step_time = now
        if dt > 0:
            rate = 1.0 / dt
            self._steps_timed += 1
            # the first step carries graph compilation: the average starts afresh at the second, instead of
            # decaying for dozens of steps from a rate many times too low
            self._rate = rate if self._steps_timed <= 2 else 0.9 * self._rate + 0.1 * rate
        self._epoch_losses.append(loss)
        self._step, self._epoch = step, epoch
        if not math.isfinite(loss):
            self._nonfinite_loss(loss, epoch, step, lr)
        record = {"type": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr,
                  "steps_per_s": self._rate, "wall_time": now - self._t0}
        if extra:
            record.update(extra)
        self.progress_obj.step_ends(now)
        self._emit(record)
        must_stop = False
        if self._handshake is not None and self._handshake.after_step(step):
            self._request_stop("stopped from the notebook: every rank ended after the same step")
            must_stop = True
        return must_stop

    def _nonfinite_loss(self, loss: float, epoch: int, step: int, lr: float | None) -> None:
        self.nonfinite.append({"epoch": epoch, "step": step, "loss": loss, "lr": lr})
        if self.checkpoints is not None:
            self.checkpoints.best_blocked = True
        if len(self.nonfinite) > 1:
            return
        rate = f" (learning rate {lr:.3g})" if lr else ""
        where = f"epoch {epoch}, step {step}{rate}"
        if self.stop_on_nonfinite:
            self.notice = (f"the training loss became {loss} at {where}: training stopped after that step. "
                           "The weights are probably no longer finite: lower the learning rate and reload "
                           "the weights; no best checkpoint is written from them. "
                           "LiveCurves(stop_on_nonfinite=False) trains on regardless.")
            self._request_stop(self.notice)
            print(f"LiveCurves: {self.notice}", file=sys.stderr, flush=True)
        else:
            self.notice = f"the training loss was not finite, first at {where}; training went on"

    def _record_epoch(self, epoch: int, step: int, values: dict[str, Any]) -> None:
        self._emit({"type": "epoch", "epoch": epoch, "step": step, **values})

    def _end_run(self, status: str | None = None) -> None:
        """The run (or, inside ``one_run()``, this phase) ended."""
        self._training = False
        if self._hold:  # one_run(): the run goes on with the next train() call
            self._held_end = True
            self._close_log()
            return
        self.state = status or (STOPPED if self._stop.is_set() else FINISHED)
        record: dict[str, Any] = {"type": "end", "time": time.time(), "steps": len(self.history_obj),
                                  "status": self.state}
        if self.stop_reason and self.state == STOPPED:
            record["reason"] = self.stop_reason
        self._emit(record)
        self._close_log()
        self._view_finish()

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()
        if self._training and self.state == RUNNING:
            self.state = STOPPING
            self._view_update(force=True)

    @contextlib.contextmanager
    def one_run(self):
        """Record several ``train``/``fit`` calls as one run: a "phase" record between them, one "end" after.

        What ``Runner.fine_tune`` uses: the head-only epochs and the unfrozen epochs are one curve.
        """
        self._hold += 1
        try:
            yield self
        finally:
            self._hold -= 1
            if not self._hold and self._held_end:
                self._held_end = False
                self._end_run()

    # -- logging from your own loop --------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to stop at the next step boundary (what the Stop button does); safe from any thread."""
        self._request_stop("stopped on request")

    def _ensure_running(self) -> None:
        if not self._training:
            self._begin_run(self.planned_epochs, self._steps_per_epoch)
            self._functional_run = True

    def _open_epoch(self, epoch: int | None) -> None:
        """The loop enters an epoch: the given number (1-based), else one after the last."""
        if epoch is not None:
            if isinstance(epoch, bool) or int(epoch) < 0:
                raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
            self._epoch = self._epoch_offset + int(epoch)
        elif self._epoch_closed:
            self._epoch += 1
        self._epoch_closed = False
        self._epoch_losses = []
        self.progress_obj.epoch_begins(self._epoch - self._epoch_offset)

    def log(self, loss: Any = None, *, step: int | None = None, **values: Any) -> None:
        """Record one training step: its ``loss`` (a MindSpore Tensor, NumPy scalar or float) and any other
        numbers (``lr=``, ``grad_norm=``…). The step number counts itself; ``step=`` overrides it.

        The run starts with the first record; a non-finite loss stops it at the next boundary (see the class).
        """
        self._ensure_running()
        if self._epoch_closed:
            self._open_epoch(None)
        number = math.nan if loss is None else scalar(loss)
        step_number = self._step + 1 if step is None else int(step)
        lr = values.pop("lr", None)
        extra = {key: as_number(value) for key, value in values.items()}
        self._logged = True
        self._rearm()
        self._record_step(number, self._epoch, step_number, None if lr is None else scalar(lr), extra)

    def log_epoch(self, **metrics: Any) -> None:
        """Record the metrics of the epoch that just ended (``eval_loss``, ``accuracy``, anything numeric).

        ``train_loss`` defaults to the mean loss of the epoch's logged steps; ``epoch=`` overrides the number.
        """
        self._ensure_running()
        epoch = metrics.pop("epoch", None)
        if epoch is not None:
            self._epoch = self._epoch_offset + int(epoch)
        elif self._epoch_closed:  # log_epoch() without steps in between: a new epoch of its own
            self._open_epoch(None)
        values = {key: as_number(value) for key, value in metrics.items()}
        finite = [loss for loss in self._epoch_losses if math.isfinite(loss)]
        if "train_loss" not in values and finite:
            values["train_loss"] = sum(finite) / len(finite)
        self._record_epoch(self._epoch, self._step, values)
        self._epoch_closed = True
        self._epoch_losses = []

    def steps(self, iterable: Iterable[Any], total: int | None = None,
              epoch: int | None = None) -> Iterator[Any]:
        """Iterate ``iterable`` (a dataset iterator) as one epoch: progress and ETA, and a clean end at the
        step boundary once Stop is asked for. ``total`` defaults to ``get_dataset_size()``/``len()``.

        In the foreground, the kernel's interrupt (■) during the loop asks for Stop instead of raising; a
        second interrupt raises ``KeyboardInterrupt`` as usual.
        """
        size = int(total) if total is not None else dataset_length(iterable)
        if size:
            self._steps_per_epoch = size
        self._ensure_running()
        if self._steps_per_epoch:
            self.progress_obj.set_size(self.planned_epochs or 0, self._steps_per_epoch)
        self._open_epoch(epoch)
        return self._iterate(iter(iterable))

    def _iterate(self, iterator: Iterator[Any]) -> Iterator[Any]:
        with _interrupt_as_stop(self) as rearm:
            self._rearm = rearm
            self._foreground_steps = rearm is not _no_rearm
            first = True
            while True:
                rearm()
                if not first:
                    self._boundary()
                first = False
                if self._stop.is_set():
                    return
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                self._logged = False
                yield item

    def _boundary(self) -> None:
        """Between two steps of ``steps()``: count a step the loop did not log, let UI events in."""
        if not self._logged:
            self._step += 1
            self.progress_obj.step_ends()
            if self._handshake is not None and self._handshake.after_step(self._step):
                self._request_stop("stopped from the notebook: every rank ended after the same step")
            self._view_update()

    def finish(self, status: str | None = None) -> None:
        """End the run: "end" record, file closed, final figure. In a ``launch`` job this rank's ``last.ckpt``
        is saved (when the network is known) and, after a Stop, the process exits with status 0."""
        if self._hold:
            self._hold = 0
        if self._training or self._held_end:
            self._held_end = False
            self._end_run(status)
        self._close_log()
        handshake = self._handshake
        if handshake is not None and self.net is not None and not self._job_saved:
            self._job_saved = True
            handshake.save_last(self.net, self._epoch, self._step)
        if handshake is not None and handshake.stopped:
            raise SystemExit(0)  # stopped on request: the rest of the script does not run

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        # MindSpore also enters every callback as a context manager around Model.train/eval: runs begun by
        # its hooks end with on_train_end, so only a run this object's own loop API began is ended here
        if not self._functional_run:
            return False
        self._functional_run = False
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._request_stop(INTERRUPTED)
            self.finish(STOPPED)
            print(f"LiveCurves: interrupted after step {self._step}; the history so far is kept.",
                  file=sys.stderr, flush=True)
            return True  # an interrupt is a Stop: no traceback wall
        self.finish(FAILED if exc_type is not None else None)
        return False

    # -- checkpoints ------------------------------------------------------------------------------------
    def save_checkpoint(self, net: Any = None, folder: str | Path | None = None, metric: str = "accuracy",
                        mode: str = "max") -> dict[str, Path | None]:
        """Write ``last.ckpt`` (and ``best.ckpt`` when the last epoch's ``metric`` improved) atomically into
        ``folder`` (default: ``run_dir``; in a ``launch`` job, this rank's folder), as ``Runner`` does.

        Weights that are not finite are never saved, and a run with a non-finite loss never replaces best.
        Returns the paths written (``None`` for what was not).
        """
        from .checkpoints import RunCheckpoints

        net = net if net is not None else self.net
        if net is None:
            raise ValueError("save_checkpoint needs the network: save_checkpoint(net) or LiveCurves(net=net)")
        self.net = net
        if folder is None:
            if self.run_dir is not None:
                folder = self.run_dir
            elif self._handshake is not None:
                folder = self._handshake.job.dir.rank_dir(self._handshake.job.rank)
            else:
                raise ValueError("save_checkpoint needs a folder: save_checkpoint(net, folder=...) or "
                                 "LiveCurves(run_dir=...)")
        folder = Path(folder)
        keeper = self.checkpoints
        if keeper is None or keeper.folder != folder or keeper.metric != metric or keeper.mode != mode:
            keeper = self.checkpoints = RunCheckpoints(folder, metric, mode)
        keeper.best_blocked = bool(self.nonfinite)
        latest = self.history_obj.latest()
        append: dict[str, Any] = {"epoch": int(latest.get("epoch") or self._epoch),
                                  "step": int(latest.get("step") or self._step)}
        epochs = self.history_obj.epochs()
        if len(epochs):
            for key, value in epochs.iloc[-1].items():
                name = key[5:] if isinstance(key, str) and key.startswith("eval_") else key
                if key in ("epoch", "step") or not isinstance(value, int | float) or not math.isfinite(value):
                    continue
                append.setdefault(name, float(value))
        before = len(keeper.saved)
        keeper.save(net, append)
        written = keeper.saved[before:]
        return {"last": keeper.last_path if keeper.last_path in written else None,
                "best": keeper.best_path if keeper.best_path in written else None}


def _no_rearm() -> None:
    return None


def as_number(value: Any) -> Any:
    """``scalar(value)`` where it is one number, else the value unchanged (a metric that is not a number)."""
    try:
        return scalar(value)
    except (TypeError, ValueError):
        return value


INTERRUPTED = "interrupted (kernel interrupt)"


@contextlib.contextmanager
def _interrupt_as_stop(recorder: Recorder):
    """While a foreground ``steps()`` loop runs on the main thread, the first interrupt (the kernel's ■, or
    the chart's Stop, which asks the server for one) asks for Stop; the second raises ``KeyboardInterrupt``.
    Elsewhere (a thread, no handler) nothing changes.

    MindSpore's runtime puts a SIGINT handler of its own in place when it runs a step, which turns the
    interrupt into SIGTERM for the whole process (the kernel would die). So the loop's handler is set again
    at every step boundary and after every ``log`` (``rearm``, two system calls), and outside a ``launch``
    job a SIGTERM that arrives while the loop runs is read as that same interrupt. Yields ``rearm``."""
    if threading.current_thread() is not threading.main_thread():
        yield _no_rearm
        return
    signals = [signal.SIGINT] if recorder._handshake is not None else [signal.SIGINT, signal.SIGTERM]
    try:
        previous = {signum: signal.getsignal(signum) for signum in signals}
    except (ValueError, TypeError):
        yield _no_rearm
        return
    if any(handler is None for handler in previous.values()):
        yield _no_rearm
        return
    aborted = False

    def restore() -> None:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal aborted
        if recorder._stop.is_set() and recorder.stop_reason == INTERRUPTED:
            aborted = True
            restore()
            raise KeyboardInterrupt
        recorder._request_stop(INTERRUPTED)
        print("LiveCurves: interrupted: stopping after this step (interrupt again to abort at once)",
              file=sys.stderr, flush=True)

    def rearm() -> None:
        if not aborted:
            for signum in signals:
                signal.signal(signum, on_interrupt)

    try:
        rearm()
    except ValueError:  # not the main thread of the main interpreter
        yield _no_rearm
        return
    try:
        yield rearm
    finally:
        recorder._rearm = _no_rearm
        recorder._foreground_steps = False
        if not aborted:
            restore()
