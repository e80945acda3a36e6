"""Your own ``train_step`` run the way ``Model.fit`` runs its network: epochs, evaluation, the same callbacks.

MindSpore 2.x teaches a functional loop (``value_and_grad`` + a ``train_step`` function, often under
``@mindspore.jit``). ``StepLoop`` runs such a step over a dataset and calls MindSpore ``Callback``s through
a real ``RunContext`` at the points ``Model.fit`` does, so everything the ``Runner`` builds on callbacks
(curves, Stop, progress, NaN guard, run checkpoints, the learning-rate ramp, a job's stop handshake) works
unchanged on it. ``build_train_step`` writes the tutorial's step for a network, a loss and an optimizer,
which is what ``Runner.fine_tune`` uses after it rebuilt the optimizer over new trainable parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import mindspore
from mindspore.train import RunContext


class CallbackParams(dict):
    """What callbacks read from ``run_context.original_args()``: a dict with attribute access."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def build_train_step(net: Any, loss_fn: Any, optimizer: Any, jit: bool = True) -> Callable[..., Any]:
    """MindSpore 2.x's training step for ``net``: ``(loss, logits)`` from ``(data, label)``, gradients of the
    optimizer's parameters by ``value_and_grad``, one optimizer update; compiled with ``jit`` by default."""

    def forward_fn(data, label):
        logits = net(data)
        return loss_fn(logits, label), logits

    grad_fn = mindspore.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

    def train_step(data, label):
        (loss, logits), grads = grad_fn(data, label)
        optimizer(grads)
        return loss, logits

    return mindspore.jit(train_step) if jit else train_step


def _loss_of(outputs: Any) -> Any:
    return outputs[0] if isinstance(outputs, tuple | list) else outputs


def _metric(name: str, given: Any) -> Any:
    if given is not None and not isinstance(given, str):
        return given
    from mindspore.train import get_metric_fn

    return get_metric_fn(name)


class StepLoop:
    """Train with ``train_step(*batch)`` (returns the loss, or ``(loss, logits)``) and evaluate with
    ``eval_step(*batch)`` (``(loss, logits)`` or logits) or the network's outputs, calling callbacks as
    ``Model.fit``/``Model.train``/``Model.eval`` do. The last column of a batch is the label."""

    def __init__(self, net: Any, train_step: Callable[..., Any] | None, optimizer: Any = None,
                 loss_fn: Any = None, eval_step: Callable[..., Any] | None = None,
                 metrics: Iterable[str] | dict[str, Any] = ("accuracy", "loss")) -> None:
        self.net, self.train_step, self.optimizer = net, train_step, optimizer
        self.loss_fn, self.eval_step = loss_fn, eval_step
        self.metrics = dict(metrics) if isinstance(metrics, dict) else {name: None for name in metrics}

    # -- training -------------------------------------------------------------------------------------
    def _params(self, epochs: int, dataset: Any) -> CallbackParams:
        return CallbackParams(
            train_network=self.net, network=self.net, optimizer=self.optimizer, loss_fn=self.loss_fn,
            epoch_num=int(epochs), batch_num=int(dataset.get_dataset_size() or 0), train_dataset=dataset,
            cur_epoch_num=0, cur_step_num=0, net_outputs=None, mode="train",
        )

    def fit(self, epochs: int, train_dataset: Any, valid_dataset: Any = None,
            callbacks: Iterable[Any] = (), dataset_sink_mode: bool = False) -> None:
        """``epochs`` epochs of ``train_step``; with ``valid_dataset`` an evaluation after each epoch whose
        metrics reach the epoch-end callbacks as ``eval_results`` (as ``Model.fit``)."""
        if self.train_step is None:
            raise ValueError("this loop has no train_step")
        callbacks = list(callbacks)
        params = self._params(epochs, train_dataset)
        context = RunContext(params)
        for callback in callbacks:
            callback.on_train_begin(context)
        for epoch in range(1, int(epochs) + 1):
            params.cur_epoch_num = epoch
            for callback in callbacks:
                callback.on_train_epoch_begin(context)
            self.net.set_train(True)
            for batch in train_dataset.create_tuple_iterator(num_epochs=1):
                params.cur_step_num += 1
                for callback in callbacks:
                    callback.on_train_step_begin(context)
                params.net_outputs = _loss_of(self.train_step(*batch))
                for callback in callbacks:
                    callback.on_train_step_end(context)
                if context.get_stop_requested():
                    break
            if valid_dataset is not None and not context.get_stop_requested():
                params.eval_results = self.eval(valid_dataset, callbacks)
                self.net.set_train(True)
            for callback in callbacks:
                callback.on_train_epoch_end(context)
            if context.get_stop_requested():
                break
        for callback in callbacks:
            callback.on_train_end(context)

    def train(self, epochs: int, train_dataset: Any, callbacks: Iterable[Any] = (),
              dataset_sink_mode: bool = False) -> None:
        """``fit`` without evaluation (what ``Model.train`` is to ``Model.fit``)."""
        self.fit(epochs, train_dataset, None, callbacks)

    # -- evaluation -----------------------------------------------------------------------------------
    def eval(self, dataset: Any, callbacks: Iterable[Any] = (),
             dataset_sink_mode: bool = False) -> dict[str, Any]:
        """Metrics over ``dataset``: "accuracy" and "loss" by name, or ``Metric`` objects in a dict."""
        callbacks = list(callbacks)
        metrics = {name: _metric(name, given) for name, given in self.metrics.items()}
        for metric in metrics.values():
            metric.clear()
        params = CallbackParams(network=self.net, batch_num=int(dataset.get_dataset_size() or 0),
                                cur_step_num=0, valid_dataset=dataset, metrics={}, mode="eval",
                                net_outputs=None)
        context = RunContext(params)
        for callback in callbacks:
            callback.on_eval_begin(context)
        self.net.set_train(False)
        has_loss = False
        for batch in dataset.create_tuple_iterator(num_epochs=1):
            params.cur_step_num += 1
            for callback in callbacks:
                callback.on_eval_step_begin(context)
            *inputs, label = batch
            if self.eval_step is not None:
                outputs = self.eval_step(*batch)
                loss, logits = outputs if isinstance(outputs, tuple | list) else (None, outputs)
            else:
                logits = self.net(*inputs)
                loss = self.loss_fn(logits, label) if self.loss_fn is not None else None
            params.net_outputs = (loss, logits, label)
            for name, metric in metrics.items():
                if name == "loss":
                    if loss is not None:
                        metric.update(loss)
                        has_loss = True
                else:
                    metric.update(logits, label)
            for callback in callbacks:
                callback.on_eval_step_end(context)
            if context.get_stop_requested():
                break
        results = {name: metric.eval() for name, metric in metrics.items() if name != "loss" or has_loss}
        params.metrics = results
        for callback in callbacks:
            callback.on_eval_end(context)
        return results
