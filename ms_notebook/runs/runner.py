"""Runner: evaluate and fine-tune a network with ``mindspore.train.Model``, blocking or in the background.

Widgets never train: they call ``Runner`` methods and read its state. Everything the widgets show is collected
by callbacks on the training thread (in PYNATIVE mode, reading parameters from another thread blocks for a
step).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mindspore
import pandas as pd
from mindspore.train import Callback, Model

from .checkpoints import RunCheckpoints
from .curves import LiveCurves
from .devices import DeviceError, available_devices, select_device

IDLE, EVALUATING, TRAINING, STOPPING = "idle", "evaluating", "training", "stopping"
MODES = {"graph": mindspore.GRAPH_MODE, "pynative": mindspore.PYNATIVE_MODE}


class RunError(RuntimeError):
    """A run failed; the original exception is ``__cause__`` and its traceback is in ``Runner.error_text``."""


class _Control(Callback):
    """Training-thread hooks: honour stop requests after the current step and keep progress counters."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    def on_train_begin(self, run_context: Any) -> None:
        cb_params = run_context.original_args()
        self.runner._progress.update(
            step=0, total=int(cb_params.epoch_num) * int(cb_params.batch_num), epoch=0,
            epochs=int(cb_params.epoch_num), started=time.perf_counter(),
        )

    def on_train_epoch_begin(self, run_context: Any) -> None:
        self.runner._progress["epoch"] = int(run_context.original_args().cur_epoch_num)

    def on_train_step_end(self, run_context: Any) -> None:
        progress = self.runner._progress
        progress["step"] += 1
        progress["now"] = time.perf_counter()
        if self.runner._stop.is_set():
            run_context.request_stop()
        self.runner._notify("step")

    def on_train_epoch_end(self, run_context: Any) -> None:
        self.runner._notify("epoch")

    def on_eval_step_end(self, run_context: Any) -> None:
        if self.runner.state == EVALUATING and self.runner._stop.is_set():
            run_context.request_stop()


class Runner:
    """Evaluate and fine-tune ``net`` on ``Model``; ``start_fit`` trains in the background, ``stop`` ends it.

    ``train_data``/``eval_data`` are MindSpore datasets or zero-argument factories that return fresh ones
    (preferred: a dataset object cannot be reused by a second ``Model``).
    """

    def __init__(
        self,
        net: Any,
        loss_fn: Any,
        optimizer: Any,
        train_data: Any,
        eval_data: Any = None,
        metrics: Iterable[str] | dict[str, Any] = ("accuracy",),
        mode: str = "graph",
        curves: LiveCurves | None = None,
        run_dir: str | Path | None = None,
        checkpoint_metric: str = "accuracy",
        source_checkpoint: str | Path | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'graph' or 'pynative', got {mode!r}")
        self.net, self.loss_fn, self.optimizer = net, loss_fn, optimizer
        self.train_data, self.eval_data = train_data, eval_data
        # "loss" rides along so that eval curves show the loss over the whole eval set
        self.metrics = dict(metrics) if isinstance(metrics, dict) else {*metrics, "loss"}
        self.mode = mode
        self.curves = curves if curves is not None else LiveCurves()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_metric = checkpoint_metric
        self.source_checkpoint = source_checkpoint
        self.model: Model | None = None
        self.state = IDLE
        self.error: BaseException | None = None
        self.error_text: str | None = None
        self.last_eval: dict[str, float] | None = None
        self.checkpoints: RunCheckpoints | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[str, Runner], None]] = []
        self._progress: dict[str, Any] = {"step": 0, "total": 0, "epoch": 0, "epochs": 0}
        self._started_runtime = False
        self._device: str | None = None

    # -- state ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state != IDLE

    @property
    def history(self) -> pd.DataFrame:
        return self.curves.history

    def actions(self) -> dict[str, bool]:
        """Which actions make sense now (what the dashboard enables)."""
        idle = self.state == IDLE
        return {
            "evaluate": idle and self.eval_data is not None,
            "fit": idle and self.train_data is not None,
            "stop": self.state in (TRAINING, EVALUATING),
            "device": idle and not self._started_runtime,
        }

    def progress(self) -> dict[str, Any]:
        """Step, total, fraction, steps per second and ETA of the current or last fit."""
        p = dict(self._progress)
        step, total = p.get("step", 0), p.get("total", 0)
        elapsed = max(p.get("now", 0.0) - p.get("started", 0.0), 0.0) if step else 0.0
        rate = step / elapsed if elapsed > 0 else 0.0
        p["fraction"] = step / total if total else 0.0
        p["steps_per_s"] = rate
        p["eta_s"] = (total - step) / rate if rate > 0 else None
        return p

    def add_listener(self, listener: Callable[[str, Runner], None]) -> None:
        """Call ``listener(event, runner)`` on "state", "step" (training thread), "epoch" and "error"."""
        self._listeners.append(listener)

    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):  # a broken display must not stop training
                listener(event, self)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._notify("state")

    # -- configuration -------------------------------------------------------------------------------
    def devices(self):
        return available_devices()

    def select_device(self, target: str) -> str:
        """Use ``target`` for the runs; only possible before the first run in this process."""
        if self.running:
            raise DeviceError("cannot change device while a run is in progress")
        current = available_devices().current
        if self._started_runtime and target != current:
            raise DeviceError(
                f"MindSpore's runtime already runs on {current} in this process and cannot switch to "
                f"{target}: "
                f"restart the kernel and select {target} before the first run"
            )
        self._device = select_device(target)
        return self._device

    def set_learning_rate(self, lr: float) -> None:
        """Set a fixed learning rate on the optimizer (between runs)."""
        if self.state == TRAINING:
            raise RuntimeError("cannot change the learning rate while training")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        param = getattr(self.optimizer, "learning_rate", None)
        if getattr(self.optimizer, "dynamic_lr", False) or not isinstance(param, mindspore.Parameter):
            raise ValueError("the optimizer uses a learning-rate schedule; set the schedule when building it")
        param.set_data(mindspore.Tensor(lr, param.dtype))

    def learning_rate(self) -> float | None:
        """The optimizer's fixed learning rate (read between runs)."""
        param = getattr(self.optimizer, "learning_rate", None)
        if isinstance(param, mindspore.Parameter):
            return float(param.asnumpy().reshape(-1)[0])
        return None

    # -- running -------------------------------------------------------------------------------------
    def _ensure_model(self) -> Model:
        if self.model is None:
            mindspore.set_context(mode=MODES[self.mode])
            self.model = Model(self.net, self.loss_fn, self.optimizer, metrics=self.metrics)
        self._started_runtime = True
        return self.model

    @staticmethod
    def _dataset(source: Any, what: str) -> Any:
        if source is None:
            raise ValueError(f"this Runner has no {what} data")
        from mindspore.dataset import Dataset

        if isinstance(source, Dataset):
            return source
        if callable(source):
            dataset = source()
            if not isinstance(dataset, Dataset):
                got = type(dataset).__name__
                raise TypeError(f"the {what} factory returned {got}, not a MindSpore dataset")
            return dataset
        raise TypeError(f"{what} data must be a MindSpore dataset or a factory returning one")

    def _begin(self, state: str) -> None:
        if self.running:
            raise RuntimeError(f"a run is already in progress ({self.state}); stop it first")
        self._stop.clear()
        self.error = None
        self.error_text = None
        self._set_state(state)

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.error_text = "".join(traceback.format_exception(error))
        self._notify("error")

    def _evaluate(self) -> dict[str, float]:
        model = self._ensure_model()
        results = model.eval(self._dataset(self.eval_data, "eval"), callbacks=[self.curves, _Control(self)])
        if not self._stop.is_set():
            self.last_eval = {k: float(v) for k, v in results.items()}
        return results

    def _fit(self, epochs: int) -> None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        model = self._ensure_model()
        callbacks: list[Any] = [_Control(self), self.curves]
        if self.run_dir is not None:
            if self.checkpoints is None:
                self.checkpoints = RunCheckpoints(
                    self.run_dir, self.checkpoint_metric, source=self.source_checkpoint
                )
            callbacks.append(self.checkpoints)
        train = self._dataset(self.train_data, "train")
        valid = self._dataset(self.eval_data, "eval") if self.eval_data is not None else None
        model.fit(int(epochs), train, valid_dataset=valid, callbacks=callbacks, dataset_sink_mode=False)

    def _run(self, state: str, job: Callable[[], Any], reraise: bool) -> Any:
        try:
            return job()
        except BaseException as error:  # kept and shown; the kernel lives on
            self._fail(error)
            if reraise:
                raise RunError(f"{state} failed: {type(error).__name__}: {error}") from error
            return None
        finally:
            if self.curves.view.enabled and self.curves._training:  # an exception skipped on_train_end
                self.curves._training = False
                self.curves.view.finish()
            self._set_state(IDLE)

    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_data`` and return the metrics (blocking)."""
        self._begin(EVALUATING)
        return self._run(EVALUATING, self._evaluate, reraise=True)

    def fit(self, epochs: int = 1) -> pd.DataFrame:
        """Fine-tune for ``epochs`` (blocking); returns the history."""
        self._begin(TRAINING)
        self._run(TRAINING, lambda: self._fit(epochs), reraise=True)
        return self.history

    def _start(self, state: str, job: Callable[[], Any]) -> threading.Thread:
        self._begin(state)
        self._thread = threading.Thread(target=self._run, args=(state, job, False), name=f"Runner-{state}",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def start_fit(self, epochs: int = 1) -> threading.Thread:
        """Fine-tune in a background thread; the kernel stays responsive. Errors land in ``error``."""
        self.curves.view.show()
        return self._start(TRAINING, lambda: self._fit(epochs))

    def start_evaluate(self) -> threading.Thread:
        """Evaluate in a background thread; results land in ``last_eval``."""
        return self._start(EVALUATING, self._evaluate)

    def stop(self) -> None:
        """Ask the run to stop after the current step (the network stays consistent)."""
        if self.running:
            self._stop.set()
            if self.state == TRAINING:
                self._set_state(STOPPING)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run; raise ``RunError`` if it failed. Returns whether it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self.error is not None:
            raise RunError(f"the run failed: {type(self.error).__name__}: {self.error}") from self.error
        return True
