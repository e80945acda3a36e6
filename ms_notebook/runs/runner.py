"""Runner: evaluate and fine-tune a network with ``mindspore.train.Model``, blocking or in the background.

Widgets never train: they call ``Runner`` methods and read its state. Everything the widgets show is collected
by callbacks on the training thread (in PYNATIVE mode, reading parameters from another thread blocks for a
step).

Runs never lie:
- one run at a time: starting is atomic (a lock), so two threads cannot both start (MindSpore would crash);
- ``run_dir`` is checked writable before training, not after the first epoch;
- a non-finite loss stops the run after that step with a message saying where and what to do
  (``stop_on_nonfinite=False`` trains on), and no checkpoint is written from non-finite weights;
- an evaluation stopped early returns its metrics marked ``partial`` and does not replace ``last_eval``.

fastai's tools, on the same state: ``fine_tune`` (head first, then everything at lower, discriminative
rates, as one run), ``find_lr`` (:mod:`ms_notebook.runs.lr_finder`) and ``interpret``
(:mod:`ms_notebook.runs.interpret`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mindspore
import pandas as pd
from mindspore.train import Callback, Model

from . import hooks
from .checkpoints import RunCheckpoints, check_writable
from .curves import LiveCurves
from .devices import DeviceError, available_devices, select_device
from .inplace import assign
from .progress import RunProgress
from .recorder import scalar

IDLE, EVALUATING, TRAINING, STOPPING = "idle", "evaluating", "training", "stopping"
FINDING_LR = "finding lr"
MODES = {"graph": mindspore.GRAPH_MODE, "pynative": mindspore.PYNATIVE_MODE}


class RunError(RuntimeError):
    """A run failed; the original exception is ``__cause__`` and its traceback is in ``Runner.error_text``."""


class NonFiniteLossError(RunError):
    """The training loss became NaN or infinite; the run stopped after that step."""


class EvalResult(dict):
    """Metrics of ``evaluate()``; ``partial`` when stopped before the end (``batches`` of ``total``)."""

    def __init__(self, metrics: dict[str, Any], partial: bool = False, batches: int = 0, total: int = 0):
        super().__init__(metrics)
        self.partial, self.batches, self.total = partial, batches, total

    def __repr__(self) -> str:
        note = f" (partial: {self.batches} of {self.total} batches)" if self.partial else ""
        return f"{dict.__repr__(self)}{note}"


class _Control(Callback):
    """Training-thread hooks: honour stop requests after the current step and keep progress counters."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    def on_train_begin(self, run_context: Any) -> None:
        cb_params = run_context.original_args()
        latest = self.runner.curves.history_obj.latest()  # the curves number epochs and steps cumulatively
        self.runner._progress.begin(
            int(cb_params.epoch_num), int(cb_params.batch_num),
            epoch_offset=int(latest.get("epoch") or 0), step_offset=int(latest.get("step") or 0),
        )

    def on_train_epoch_begin(self, run_context: Any) -> None:
        self.runner._progress.epoch_begins(int(run_context.original_args().cur_epoch_num))

    def on_train_step_end(self, run_context: Any) -> None:
        runner = self.runner
        runner._progress.step_ends()
        cb_params = run_context.original_args()
        loss = scalar(cb_params.net_outputs)
        if not math.isfinite(loss):
            runner._nonfinite.append({
                "epoch": int(cb_params.cur_epoch_num), "step": int(cb_params.cur_step_num),
                "loss": loss, "lr": runner.learning_rate(),
            })
            if runner.checkpoints is not None:
                runner.checkpoints.best_blocked = True
            if runner.stop_on_nonfinite:
                run_context.request_stop()
        if runner._stop.is_set():
            run_context.request_stop()
        runner._notify("step")

    def on_train_epoch_end(self, run_context: Any) -> None:
        self.runner._notify("epoch")

    def on_eval_begin(self, run_context: Any) -> None:
        self.runner._eval_count = [0, int(run_context.original_args().batch_num or 0)]

    def on_eval_step_end(self, run_context: Any) -> None:
        self.runner._eval_count[0] += 1
        if self.runner.state == EVALUATING and self.runner._stop.is_set():
            run_context.request_stop()


class Runner:
    """Evaluate and fine-tune ``net`` on ``Model``; ``start_fit`` trains in the background, ``stop`` ends it.

    ``train_data``/``eval_data`` are MindSpore datasets or zero-argument factories that return fresh ones
    (preferred: a dataset object cannot be reused by a second ``Model``). ``plan`` (the ``TransferPlan``
    applied to ``net``) and ``optimizer_factory`` (``lambda params: nn.Momentum(params, 0.01, 0.9)``) let
    ``fine_tune`` freeze, unfreeze and rebuild the optimizer; the factory defaults to the plan's.
    """

    def __init__(
        self,
        net: Any,
        loss_fn: Any = None,
        optimizer: Any = None,
        train_data: Any = None,
        eval_data: Any = None,
        metrics: Iterable[str] | dict[str, Any] = ("accuracy",),
        mode: str = "graph",
        curves: LiveCurves | None = None,
        run_dir: str | Path | None = None,
        checkpoint_metric: str = "accuracy",
        source_checkpoint: str | Path | None = None,
        plan: Any = None,
        optimizer_factory: Callable[[Any], Any] | None = None,
        stop_on_nonfinite: bool = True,
        class_names: list[str] | None = None,
        train_step: Callable[..., Any] | None = None,
        eval_step: Callable[..., Any] | None = None,
        make_train_step: Callable[[Any], Callable[..., Any]] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'graph' or 'pynative', got {mode!r}")
        if train_step is None and make_train_step is not None:
            if optimizer is None:
                raise ValueError("make_train_step builds the step for an optimizer: give optimizer= too")
            train_step = make_train_step(optimizer)
        if train_step is None and (loss_fn is None or optimizer is None):
            raise ValueError("Runner needs loss_fn and optimizer (Model.train), or train_step= (your step)")
        self.net, self.loss_fn, self.optimizer = net, loss_fn, optimizer
        self.train_step, self.eval_step, self.make_train_step = train_step, eval_step, make_train_step
        self.train_data, self.eval_data = train_data, eval_data
        # "loss" rides along so that eval curves show the loss over the whole eval set
        self.metrics = dict(metrics) if isinstance(metrics, dict) else {*metrics, "loss"}
        self.mode = mode
        self.curves = curves if curves is not None else LiveCurves()
        self.curves.stop_on_nonfinite = stop_on_nonfinite  # one rule for the run: the runner's
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_metric = checkpoint_metric
        self.source_checkpoint = source_checkpoint
        self.plan = plan
        self.optimizer_factory = optimizer_factory
        self.stop_on_nonfinite = stop_on_nonfinite
        self.class_names = class_names
        self.model: Model | None = None
        self.state = IDLE
        self.error: BaseException | None = None
        self.error_text: str | None = None
        self.notice: str | None = None  # something the last run wants said that is not an error
        self.last_eval: dict[str, float] | None = None
        self.last_lr_find: Any = None  # LRFinderResult of the last find_lr()
        self.last_interpretation: Any = None  # Interpretation of the last interpret()
        self.checkpoints: RunCheckpoints | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[str, Runner], None]] = []
        self._progress = RunProgress()
        self._nonfinite: list[dict[str, Any]] = []
        self._eval_count = [0, 0]
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
            "stop": self.state in (TRAINING, EVALUATING, FINDING_LR),
            "device": idle and not self._started_runtime,
        }

    def can_fine_tune(self) -> bool:
        """Whether ``fine_tune`` has what it needs: an optimizer factory (given, or the plan's)."""
        return self._factory() is not None

    def progress(self) -> dict[str, Any]:
        """Step, total, fraction, moving-window steps per second and ETA of the current or last fit, and the
        epochs it covers in the cumulative history (see ``ms_notebook.runs.progress``)."""
        return self._progress.snapshot()

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

    def _lr_params(self) -> list[Any]:
        """The optimizer's distinct learning-rate Parameters: one, or one per parameter group."""
        param = getattr(self.optimizer, "learning_rate", None)
        if getattr(self.optimizer, "dynamic_lr", False) or param is None:
            return []
        if isinstance(param, mindspore.Parameter):
            return [param]
        params = list({id(p): p for p in param}.values()) if isinstance(param, Iterable) else []
        return params if all(isinstance(p, mindspore.Parameter) for p in params) else []

    def set_learning_rate(self, lr: float) -> None:
        """Set a fixed learning rate on the optimizer (between runs); with parameter groups, the top rate
        (the other groups keep their ratio to it)."""
        if self.state == TRAINING:
            raise RuntimeError("cannot change the learning rate while training")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        params = self._lr_params()
        if not params:
            raise ValueError("the optimizer uses a learning-rate schedule; set the schedule when building it")
        values = [float(p.asnumpy().reshape(-1)[0]) for p in params]
        top = max(values)
        for param, value in zip(params, values, strict=True):
            assign(param, lr * (value / top if top > 0 else 1.0))  # set_data is ignored in PYNATIVE

    def learning_rate(self) -> float | None:
        """The optimizer's fixed learning rate (the top one with parameter groups), read between runs."""
        params = self._lr_params()
        if not params:
            return None
        return max(float(p.asnumpy().reshape(-1)[0]) for p in params)

    @property
    def functional(self) -> bool:
        """Whether this runner trains with your own ``train_step`` (MindSpore 2.x's loop), not ``Model``."""
        return self.train_step is not None

    # -- running -------------------------------------------------------------------------------------
    def _ensure_model(self) -> Any:
        """``Model`` over the network, loss and optimizer, or the ``StepLoop`` running your ``train_step``:
        both train, fit and evaluate with the same callbacks."""
        if self.model is None:
            mindspore.set_context(mode=MODES[self.mode])
            if self.functional:
                from .loop import StepLoop

                self.model = StepLoop(self.net, self.train_step, self.optimizer, self.loss_fn, self.eval_step,
                                      self.metrics)
            else:
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
        with self._start_lock:  # check-and-set in one step: two threads cannot both start
            if self.running:
                raise RuntimeError(f"a run is already in progress ({self.state}); stop it first")
            self.state = state
        self._stop.clear()
        self.error = None
        self.error_text = None
        self.notice = None
        self._notify("state")

    def _check_run_dir(self) -> None:
        if self.run_dir is not None:
            try:
                check_writable(self.run_dir)
            except OSError as error:
                raise RunError(str(error)) from error

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.error_text = "".join(traceback.format_exception(error))
        self._notify("error")

    def _evaluate(self) -> EvalResult:
        model = self._ensure_model()
        self._eval_count = [0, 0]
        results = model.eval(self._dataset(self.eval_data, "eval"), callbacks=[_Control(self), self.curves])
        done, total = self._eval_count
        partial = self._stop.is_set() and (not total or done < total)
        metrics = EvalResult({k: float(v) for k, v in results.items()}, partial, done, total)
        if partial:
            self.notice = (f"evaluation stopped after {done} of {total or '?'} batches: its metrics cover "
                           "part of the data (marked partial, not kept as the last evaluation)")
        else:
            self.last_eval = dict(metrics)
        return metrics

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
            self.checkpoints.best_blocked = False
            callbacks.append(self.checkpoints)
        train = self._dataset(self.train_data, "train")
        valid = self._dataset(self.eval_data, "eval") if self.eval_data is not None else None
        self._nonfinite = []
        model.fit(int(epochs), train, valid_dataset=valid, callbacks=callbacks, dataset_sink_mode=False)
        self._after_fit()

    def _after_fit(self) -> None:
        """Say what a non-finite loss did to the run (raise when it stopped it)."""
        if not self._nonfinite:
            return
        first = self._nonfinite[0]
        lr = f" (learning rate {first['lr']:.3g})" if first.get("lr") else ""
        where = f"epoch {first['epoch']}, step {first['step']}{lr}"
        if self.stop_on_nonfinite:
            raise NonFiniteLossError(
                f"the training loss became {first['loss']} at {where}: training stopped after that step. "
                "The weights are probably no longer finite: lower the learning rate and apply the plan again "
                "(or reload a checkpoint). No checkpoint was written from these weights. "
                "Runner(stop_on_nonfinite=False) trains on regardless."
            )
        self.notice = (f"the training loss was not finite at {len(self._nonfinite)} steps, first at {where}; "
                       "training went on (stop_on_nonfinite=False)")

    def _run(self, state: str, job: Callable[[], Any], reraise: bool) -> Any:
        try:
            return job()
        except BaseException as error:  # kept and shown; the kernel lives on
            self._fail(error)
            if reraise:
                if isinstance(error, RunError):
                    raise
                raise RunError(f"{state} failed: {type(error).__name__}: {error}") from error
            return None
        finally:
            if self.curves.view.enabled and self.curves._training:  # an exception skipped on_train_end
                self.curves._training = False
                self.curves.view.finish()
            self._set_state(IDLE)

    def evaluate(self) -> EvalResult:
        """Evaluate on ``eval_data`` and return the metrics (blocking); ``.partial`` when stopped early."""
        self._begin(EVALUATING)
        return self._run(EVALUATING, self._evaluate, reraise=True)

    def fit(self, epochs: int = 1) -> pd.DataFrame:
        """Fine-tune for ``epochs`` (blocking); returns the history."""
        self._check_run_dir()
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
        self._check_run_dir()
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
                self.curves.stop()  # the curves end the run as "stopped", not "finished"
                self._set_state(STOPPING)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run; raise ``RunError`` if it failed. Returns whether it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self.error is not None:
            if isinstance(self.error, RunError):
                raise type(self.error)(str(self.error)) from self.error
            raise RunError(f"the run failed: {type(self.error).__name__}: {self.error}") from self.error
        return True

    # -- fastai's tools ------------------------------------------------------------------------------
    def _factory(self) -> Callable[[Any], Any] | None:
        return self.optimizer_factory or getattr(self.plan, "optimizer_factory", None)

    def _phase_plan(self) -> Any:
        """The plan fine_tune freezes and unfreezes: the one given, or one over the network's own weights."""
        if self.plan is None:
            TransferPlan = hooks.resolve("transfer_plan")

            # the network's current weights are "the pretrained ones": everything matches and nothing is read
            self.plan = TransferPlan(self.net, {p.name: p for p in self.net.get_parameters()})
        return self.plan

    def _use(self, report: Any) -> None:
        """Train with the optimizer a plan just built (a new Model, or a new train_step over the new
        trainable parameters: your ``make_train_step(optimizer)``, else MindSpore 2.x's step from
        ``loss_fn``)."""
        self.optimizer = report.optimizer
        self.model = None
        if self.functional:
            if self.make_train_step is not None:
                self.train_step = self.make_train_step(self.optimizer)
            else:
                from .loop import build_train_step

                self.train_step = build_train_step(self.net, self.loss_fn, self.optimizer,
                                                   jit=self.mode == "graph")

    def _fine_tune(self, epochs: int, freeze_epochs: int, lr: float | None, lr_mult: float) -> None:
        TransferError = hooks.resolve("transfer_error")

        factory = self._factory()
        plan = self._phase_plan()
        base = lr if lr is not None else self.learning_rate()
        if base is None or not base > 0:
            raise ValueError("fine_tune needs a learning rate: fine_tune(epochs, lr=0.01)")
        with self.curves.one_run():
            if freeze_epochs:
                plan.freeze_backbone()
                if not plan.trainable:  # nothing is new (same classes): the last block is the head
                    plan.train_last(1)
                try:
                    self._use(plan.apply(optimizer=factory, lr=base, load=False))
                except TransferError as error:
                    raise RunError(f"fine_tune could not freeze the backbone: {error}") from error
                self.curves.phase = "head only"
                self._fit(freeze_epochs)
                if self._stop.is_set():
                    return
            plan.unfreeze_all()
            top = base / 2.0
            self._use(plan.apply(optimizer=factory, lr=slice(top / lr_mult, top), load=False))
            self.curves.phase = "unfrozen"
            self._fit(epochs)

    def _check_fine_tune(self, epochs: int, freeze_epochs: int) -> None:
        if self.functional and self.make_train_step is None and self.loss_fn is None:
            raise RunError("fine_tune builds a new training step over the parameters it unfreezes: give "
                           "Runner(..., make_train_step=lambda optimizer: <your train_step for it>) or "
                           "loss_fn= "
                           "(then MindSpore 2.x's value_and_grad step is built for you)")
        if self._factory() is None:
            raise RunError("fine_tune rebuilds the optimizer after freezing: give Runner(..., "
                           "optimizer_factory=lambda params: nn.Momentum(params, 0.01, 0.9)) or a plan "
                           "applied with an optimizer factory")
        if int(epochs) < 1 or int(freeze_epochs) < 0:
            raise ValueError(f"fine_tune needs epochs >= 1, freeze_epochs >= 0: {epochs}, {freeze_epochs}")
        self._check_run_dir()

    def fine_tune(self, epochs: int, freeze_epochs: int = 1, lr: float | None = None,
                  lr_mult: float = 100.0) -> pd.DataFrame:
        """fastai's ``fine_tune`` (blocking): ``freeze_epochs`` with the backbone frozen (the head at ``lr``),
        then ``epochs`` with everything unfrozen at discriminative rates from ``lr / 2 / lr_mult`` (first
        block) to ``lr / 2`` (last), as one run on the curves. ``lr`` defaults to the optimizer's rate."""
        self._check_fine_tune(epochs, freeze_epochs)
        self._begin(TRAINING)
        job = lambda: self._fine_tune(int(epochs), int(freeze_epochs), lr, lr_mult)  # noqa: E731
        self._run(TRAINING, job, reraise=True)
        return self.history

    def start_fine_tune(self, epochs: int, freeze_epochs: int = 1, lr: float | None = None,
                        lr_mult: float = 100.0) -> threading.Thread:
        """``fine_tune`` in a background thread."""
        self._check_fine_tune(epochs, freeze_epochs)
        self.curves.view.show()
        return self._start(TRAINING, lambda: self._fine_tune(int(epochs), int(freeze_epochs), lr, lr_mult))

    def _find_lr(self, start_lr: float, end_lr: float, steps: int, diverge: float) -> Any:
        from .lr_finder import find_lr

        result = find_lr(self._ensure_model(), self.net, self.optimizer, lambda: self._dataset(
            self.train_data, "train"), start_lr, end_lr, steps, diverge, should_stop=self._stop.is_set)
        self.last_lr_find = result
        return result

    def find_lr(self, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 50,
                diverge: float = 4.0) -> Any:
        """The learning-rate finder (blocking): ``steps`` training steps at exponentially growing rates,
        stopped when the loss diverges; weights and optimizer state are restored afterwards. Returns an
        ``LRFinderResult`` (curve, ``suggestion``, plot)."""
        self._begin(FINDING_LR)
        return self._run(FINDING_LR, lambda: self._find_lr(start_lr, end_lr, steps, diverge), reraise=True)

    def start_find_lr(self, **kwargs: Any) -> threading.Thread:
        """``find_lr`` in a background thread; the result lands in ``last_lr_find``."""
        return self._start(FINDING_LR, lambda: self._find_lr(**{
            "start_lr": 1e-6, "end_lr": 10.0, "steps": 50, "diverge": 4.0, **kwargs}))

    def _interpret(self, top_k: int) -> Any:
        from .interpret import interpret

        mindspore.set_context(mode=MODES[self.mode])
        self._started_runtime = True
        result = interpret(self.net, self._dataset(self.eval_data, "eval"), self.class_names,
                           keep=max(36, top_k), should_stop=self._stop.is_set)
        self.last_interpretation = result
        return result

    def interpret(self, top_k: int = 9) -> Any:
        """Confusion matrix, per-class accuracy and top losses on ``eval_data`` (blocking): an
        ``Interpretation`` with DataFrames (``confusion()``, ``per_class()``, ``top_losses()``)."""
        self._begin(EVALUATING)
        return self._run(EVALUATING, lambda: self._interpret(top_k), reraise=True)

    def start_interpret(self, top_k: int = 9) -> threading.Thread:
        """``interpret`` in a background thread; the result lands in ``last_interpretation``."""
        return self._start(EVALUATING, lambda: self._interpret(top_k))
