"""LiveCurves: a MindSpore training callback that records one metric history and draws it live.

Per step it only reads the loss (the one device sync training needs anyway) and appends a row; at most a few
times a second it sends the numbers to a live chart that the browser draws, in the callback's own output area.
When the run ends the live view is replaced in place by a static PNG, so a saved notebook shows the curves
without a kernel.
``follow(path)`` draws a run that another process writes as JSON Lines (``LiveCurves(log_path=...)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from mindspore.train import Callback

from . import hooks
from .history import History, clean_record, read_jsonl
from .plotting import render_png
from .recorder import Recorder, as_number, scalar

Overlay = "LiveCurves | History | pd.DataFrame | str | Path"


def _as_history(item: Any, label: str | None) -> History:
    if isinstance(item, LiveCurves):
        history = History.from_records(item.records(), item.history_obj.label)
    elif isinstance(item, History):
        history = item
    elif isinstance(item, pd.DataFrame):
        history = History.from_frame(item, label or "earlier run")
    elif isinstance(item, str | Path):
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"overlay file {path} does not exist")
        if path.suffix == ".csv":
            history = History.from_frame(pd.read_csv(path), label or path.stem)
        else:
            history = History.from_records(read_jsonl(path), label or path.stem)
    else:
        raise TypeError(f"cannot overlay {type(item).__name__}: need LiveCurves, History, DataFrame or path")
    if label:
        history.label = label
    return history


class NullView:
    """The view when no widgets layer provided one (a script, or MindSpore's own processes): draws nothing."""

    enabled = False

    def __init__(self, curves: Any, max_updates_per_s: float = 0.0, display: bool | None = None) -> None:
        self.curves = curves
        self.embedded = False
        self.chart = None
        self.handle = None
        self.last_png: bytes | None = None
        self.push_count = self.draw_count = 0

    def widget(self) -> Any:
        raise RuntimeError("no live view here: import ms_notebook inside a Jupyter kernel to draw the curves")

    def show(self) -> None: ...

    def update(self, force: bool = False) -> None: ...

    def overlays_changed(self) -> None: ...

    def start(self) -> None: ...

    def finish(self) -> None: ...

    def restyle_final(self) -> None: ...

    def render(self) -> bytes:
        curves = self.curves
        self.last_png = render_png(curves.history_obj, curves.overlays, curves.smoothing, curves.log_y)
        self.draw_count += 1
        return self.last_png

    def ipython_display(self) -> None:
        from IPython.display import display

        display(self.curves.history)


class LiveCurves(Recorder, Callback):
    """Record per-step loss and per-epoch metrics of any training loop and draw them live.

    Your own loop (MindSpore 2.x's functional style) logs with ``log``/``log_epoch`` and iterates with
    ``steps`` (progress, ETA, Stop); ``Model.train``/``Model.fit`` take it as a callback. Both feed the same
    recorder (``runs/recorder.py``): one history, JSON-lines file, NaN guard, live chart and final PNG.

    Args:
        label: name of this run in legends and overlays.
        overlays: earlier runs drawn beside this one (LiveCurves, History, DataFrame, or a .csv/.jsonl path).
        log_path: also append the records as JSON Lines to this file (read by ``follow``). Inside a job
            started by ``ms_notebook.launch`` it defaults to the run's metrics file on rank 0, and every rank
            honours the notebook's Stop (``runs/handshake.py``).
        max_redraws_per_s: live chart update throttle (default 2 per second).
        smoothing: EMA factor for the step loss in [0, 1) with bias correction; 0 draws raw values.
        log_y: logarithmic loss axis.
        display: draw in the notebook; ``None`` means only when running inside a Jupyter kernel.
        stop_on_nonfinite, run_dir, epochs, net: see :class:`~ms_notebook.runs.recorder.Recorder`.
    """

    def __init__(
        self,
        label: str = "run",
        overlays: Iterable[Any] = (),
        log_path: str | Path | None = None,
        max_redraws_per_s: float = 2.0,
        smoothing: float = 0.6,
        log_y: bool = False,
        display: bool | None = None,
        stop_on_nonfinite: bool = True,
        run_dir: str | Path | None = None,
        epochs: int | None = None,
        net: Any = None,
    ) -> None:
        Callback.__init__(self)
        Recorder.__init__(self, label, log_path, stop_on_nonfinite, run_dir, epochs, net)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.overlays: list[History] = [_as_history(item, None) for item in overlays]
        self.smoothing = smoothing
        self.log_y = log_y
        view = hooks.resolve("curve_view") or NullView  # the widgets layer's, provided from the top package
        self.view = view(self, max_redraws_per_s, display)
        self.stop_button = True  # the chart offers Stop (a Dashboard embedding the chart has its own)

    # -- the view's hooks ------------------------------------------------------------------------------
    def _view_start(self) -> None:
        self.view.start()

    def _view_update(self, force: bool = False) -> None:
        self.view.update(force=force)

    def _view_finish(self) -> None:
        self.view.finish()

    # -- overlays and style ----------------------------------------------------------------------------
    def add_overlay(self, run: Any, label: str | None = None) -> None:
        """Draw an earlier run beside this one."""
        self.overlays.append(_as_history(run, label))
        self.view.overlays_changed()

    def new_run(self, label: str) -> None:
        """Keep the current run as an overlay and start recording a fresh one under ``label``."""
        if len(self.history_obj):
            self.overlays.append(self.history_obj)
        self.history_obj = History(label)
        self._records = []
        self._step_offset = self._epoch_offset = 0
        self.view.overlays_changed()

    def set_style(self, smoothing: float | None = None, log_y: bool | None = None) -> None:
        """Change smoothing or log scale and redraw."""
        if smoothing is not None:
            if not 0.0 <= smoothing < 1.0:
                raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
            self.smoothing = smoothing
        if log_y is not None:
            self.log_y = log_y
        chart = self.view.chart
        if chart is not None:  # the chart's observer redraws the final figure if there is one
            with chart.hold_trait_notifications():
                chart.smoothing, chart.log_y = self.smoothing, self.log_y
        else:
            self.view.restyle_final()

    def figure_png(self) -> bytes:
        """The current figure as PNG bytes (what the notebook shows)."""
        return render_png(self.history_obj, self.overlays, self.smoothing, self.log_y)

    def _ipython_display_(self) -> None:
        """The live chart (with the static PNG beside it), or the history where no view draws."""
        self.view.ipython_display()

    # -- the Callback adapter (Model.train / Model.fit, and Runner's own loop) -------------------------
    def _read_lr(self, cb_params: Any) -> float | None:
        optimizer = getattr(cb_params, "optimizer", None)
        if optimizer is None:
            return None
        try:
            lr = optimizer.get_lr()
            if isinstance(lr, tuple | list):  # parameter groups: the top (last block's) rate
                return max(float(v.asnumpy().reshape(-1)[0]) for v in lr)
            return float(lr.asnumpy().reshape(-1)[0])
        except Exception:
            return None

    def on_train_begin(self, run_context: Any) -> None:
        cb_params = run_context.original_args()
        self._begin_run(int(getattr(cb_params, "epoch_num", 0) or 0),
                        int(getattr(cb_params, "batch_num", 0) or 0))

    def on_train_epoch_begin(self, run_context: Any) -> None:
        self._lr = self._read_lr(run_context.original_args())
        self._epoch_losses = []
        self.progress_obj.epoch_begins(int(run_context.original_args().cur_epoch_num))

    def on_train_step_end(self, run_context: Any) -> None:
        cb_params = run_context.original_args()
        loss = scalar(cb_params.net_outputs)
        must_stop = self._record_step(loss, self._epoch_offset + int(cb_params.cur_epoch_num),
                                      self._step_offset + int(cb_params.cur_step_num), self._lr)
        if must_stop or self._stop.is_set():
            run_context.request_stop()

    def on_train_epoch_end(self, run_context: Any) -> None:
        cb_params = run_context.original_args()
        values: dict[str, Any] = {}
        if self._epoch_losses:
            values["train_loss"] = sum(self._epoch_losses) / len(self._epoch_losses)
        results = cb_params.get("eval_results") or cb_params.get("metrics") or {}
        for name, value in results.items():
            # Model.fit's own "eval_loss" is the loss of the last eval batch only (MindSpore 2.10 builds a new
            # Loss metric for every batch), so it is not recorded; the "loss" metric gives the real eval loss.
            if name == "eval_loss":
                continue
            values[f"eval_{name}"] = as_number(value)
        self._record_epoch(self._epoch_offset + int(cb_params.cur_epoch_num),
                           self._step_offset + int(cb_params.cur_step_num), values)

    def on_eval_end(self, run_context: Any) -> None:
        if self._training:  # inside Model.fit: on_train_epoch_end records the results
            return
        cb_params = run_context.original_args()
        total = int(getattr(cb_params, "batch_num", 0) or 0)
        if total and int(getattr(cb_params, "cur_step_num", 0) or 0) < total:
            return  # a stopped evaluation covers part of the data: not a point on the curves
        latest = self.history_obj.latest()
        values = {f"eval_{k}": as_number(v) for k, v in (cb_params.get("metrics") or {}).items()}
        epoch, step = latest.get("epoch") or 0, latest.get("step") or 0
        self._emit({"type": "epoch", "epoch": epoch, "step": step, **values})

    def on_train_end(self, run_context: Any) -> None:
        self._end_run()
        handshake = self._handshake
        if handshake is not None and not self._hold:
            cb_params = run_context.original_args()
            self._job_saved = True
            handshake.save_last(cb_params.train_network, int(cb_params.cur_epoch_num),
                                int(cb_params.cur_step_num))
            if handshake.stopped:
                raise SystemExit(0)  # stopped on request: the rest of the script does not run


MAX_LINE_BYTES = 16 * 1024 * 1024  # a "line" longer than this without a newline is dropped as bad
_HEAD_BYTES = 64  # the file's first bytes, compared on each poll to notice a rewrite in place
_READ_CHUNK = 1 << 20  # bytes read at a time: a line over MAX_LINE_BYTES is dropped while it is read
_POLL_BYTES = 64 << 20  # at most this much per poll, so stop() and the timeout are seen between polls


class Follower:
    """Tails a JSON-lines metric log written by another process and draws it live (see ``follow``).

    It never dies on what the file holds: a line that is not UTF-8, not JSON, not an object, or has a field
    of the wrong type is skipped and counted (``skipped``, ``last_skipped`` says why). Bytes are split into
    lines before decoding, so a character cut across two writes is decoded whole. A file truncated and
    rewritten (``truncations``) or replaced by a new one under the same name (``rotations``, the old one's
    last lines read first) is followed from its start; a new file that begins with a "begin" record starts
    a new run, the previous one kept as an overlay. Only a regular file is opened (a FIFO or device at
    ``path`` is waited out like a missing file, ``last_skipped`` says why), reads are bounded per poll, and
    a line over ``MAX_LINE_BYTES`` is dropped as it is read, never held whole.
    """

    def __init__(self, path: str | Path, timeout: float, poll_s: float, curves: LiveCurves) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.poll_s = poll_s
        self.curves = curves
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reason: str | None = None  # why following ended: "end", "timeout", "stopped"
        self.skipped = 0  # bad lines skipped
        self.last_skipped: str | None = None
        self.truncations = 0
        self.rotations = 0
        self.errors = 0  # unexpected errors while reading (the file vanished mid-read, ...), retried
        self._handle: Any = None
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._buffer = b""
        self._head = b""
        self._fresh = False  # the file (re)started: a "begin" record there starts a new run
        self._ended = False
        self._overlong = False  # inside a line already over MAX_LINE_BYTES: bytes dropped up to its newline
        self._more = False  # the last poll stopped at its byte budget: poll again without waiting

    @property
    def history(self) -> pd.DataFrame:
        return self.curves.history

    # -- reading -------------------------------------------------------------------------------------
    def _bad(self, why: str) -> None:
        self.skipped += 1
        self.last_skipped = why

    def _line(self, raw: bytes) -> None:
        if self._ended or not raw.strip():
            return
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return self._bad("not UTF-8")
        except ValueError:
            return self._bad("not JSON")
        record = clean_record(obj)
        if record is None:
            return self._bad("not a metric record (an object with a type, fields of the right types)")
        if self._fresh:
            self._fresh = False
            if record["type"] == "begin" and len(self.curves.history_obj):
                self.curves.new_run(record.get("label") or self.curves.history_obj.label)
        try:
            self.curves.history_obj.apply(record)
        except Exception as exc:  # a record History cannot take: skip it like a bad line
            return self._bad(f"{type(exc).__name__}: {exc}")
        self.curves._records.append(record)
        if record["type"] == "end":
            self._ended = True

    def _drain(self) -> bool:
        """Read what the open file has beyond the offset; feed complete lines. True when bytes came."""
        got = False
        budget = _POLL_BYTES
        while budget > 0 and not self._stop.is_set():
            data = self._handle.read(min(_READ_CHUNK, budget))
            if not data:
                break
            got = True
            budget -= len(data)
            if self._offset < _HEAD_BYTES:  # the head holds the file's first bytes read so far
                self._head += data[: _HEAD_BYTES - self._offset]
            self._offset += len(data)
            self._feed(data)
        self._more = budget <= 0
        return got

    def _feed(self, data: bytes) -> None:
        """Split new bytes into lines; a line growing past MAX_LINE_BYTES is dropped as it comes."""
        if self._overlong:
            cut = data.find(b"\n")
            if cut < 0:
                return
            data, self._overlong = data[cut + 1 :], False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._line(raw)
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer, self._overlong = b"", True
            self._bad(f"a line longer than {MAX_LINE_BYTES} bytes")

    def _open(self, identity: tuple[int, int]) -> None:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags)  # never blocks, even on a FIFO with no writer
        if os.fstat(fd).st_mode & 0o170000 != 0o100000:  # S_ISREG (the imports above are not this class's)
            os.close(fd)
            self.last_skipped = f"{self.path.name} is not a regular file: waiting for one"
            return
        os.set_blocking(fd, True)
        self._handle = os.fdopen(fd, "rb", buffering=0)  # kept open between polls to finish a rotated file
        self._identity = identity
        self._restart()

    def _restart(self) -> None:
        self._offset, self._buffer, self._head, self._fresh = 0, b"", b"", True
        self._overlong = False

    def _close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        self._handle, self._identity = None, None

    def _rewritten(self, size: int) -> bool:
        """The open file is shorter than what was read, or its first bytes changed: rewritten in place."""
        if size < self._offset:
            return True
        if not self._head:
            return False
        return os.pread(self._handle.fileno(), len(self._head), 0) != self._head

    def poll(self) -> bool:
        """Read once what is new (following truncation and rotation); True when bytes came."""
        got = False
        try:
            st = os.stat(self.path)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            st, identity = None, None
        if self._handle is not None and identity != self._identity:
            got = self._drain()  # rotated or removed: finish the old file first
            if self._buffer and not self._overlong:  # its last line, even without a newline
                self._line(self._buffer)
            self._close()
            if identity is not None:
                self.rotations += 1
        elif self._handle is not None and st is not None and self._rewritten(st.st_size):
            self.truncations += 1
            self._handle.seek(0)
            self._restart()
        if self._handle is None and identity is not None:
            self._open(identity)
        if self._handle is not None:
            got = self._drain() or got
        return got

    def run(self) -> str:
        """Follow in this thread until the end record, ``timeout`` seconds without news, or stop()."""
        last_news = time.monotonic()
        self.curves.view.start()
        try:
            while not self._stop.is_set():
                try:
                    got = self.poll()
                except Exception:  # never let the thread die: count it, try again next poll
                    self.errors += 1
                    got = False
                if got:
                    self.curves.view.update()
                if self._ended:
                    self.reason = "end"
                    return self.reason
                now = time.monotonic()
                if got:
                    last_news = now
                elif now - last_news > self.timeout:
                    self.reason = "timeout"
                    return self.reason
                if not self._more:
                    self._stop.wait(self.poll_s)
            self.reason = "stopped"
            return self.reason
        finally:
            self._close()
            self.curves.view.finish()

    def start(self) -> Follower:
        self._thread = threading.Thread(target=self.run, name="follow", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> str | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.reason


def follow(
    path: str | Path,
    timeout: float = 120.0,
    poll_s: float = 0.5,
    block: bool = False,
    **curves_kwargs: Any,
) -> Follower:
    """Plot, live, the JSON-lines log another process writes with ``LiveCurves(log_path=path)``.

    Stops at the run's end record, after ``timeout`` seconds without new lines, or on ``stop()``. By default
    it follows in a background thread (the kernel stays free); ``block=True`` follows in the caller.
    """
    curves = LiveCurves(label=curves_kwargs.pop("label", Path(path).stem), **curves_kwargs)
    follower = Follower(path, timeout, poll_s, curves)
    if block:
        follower.run()
        return follower
    curves.view.show()
    return follower.start()
