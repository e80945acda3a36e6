"""Interpretation of a classifier on an evaluation set (fastai's ``ClassificationInterpretation``): the
confusion matrix, per-class accuracy and the samples with the highest loss, as DataFrames.

It runs the network in inference mode over the dataset once, batch by batch; the first column is the input,
the second the integer label (as ``Model.eval`` expects). Per-sample losses are the cross-entropy of the
softmax, computed here from the logits (the training loss may average over the batch). Only the inputs of the
``keep`` highest losses are kept, so a large evaluation set costs no memory for images.
"""

from __future__ import annotations

import heapq
import html
import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

_render_lock = threading.Lock()  # matplotlib is not thread-safe: the Dashboard may draw from two threads
PANEL_INCHES = 1.3  # one top-loss image with its title


class InterpretError(ValueError):
    """The network's outputs are not class scores for the dataset's integer labels."""


def _as_image(array: np.ndarray) -> np.ndarray:
    """H×W for one channel, H×W×C for colour (channels first or last)."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass
class Interpretation:
    """Predictions of a classifier on an evaluation set, and the tables made from them."""

    labels: np.ndarray
    predictions: np.ndarray
    losses: np.ndarray
    probabilities: np.ndarray  # softmax probability of the true class, per sample
    class_names: list[str]
    kept_inputs: dict[int, np.ndarray] = field(default_factory=dict)  # sample index -> input (top losses)
    partial: bool = False  # the run was stopped before the whole set was seen

    @property
    def accuracy(self) -> float:
        return float((self.labels == self.predictions).mean()) if len(self.labels) else float("nan")

    def confusion(self) -> pd.DataFrame:
        """Counts: rows are the true classes, columns the predicted ones."""
        n = len(self.class_names)
        matrix = np.zeros((n, n), dtype=np.int64)
        np.add.at(matrix, (self.labels, self.predictions), 1)
        index = pd.Index(self.class_names, name="true")
        return pd.DataFrame(matrix, index=index, columns=pd.Index(self.class_names, name="predicted"))

    def per_class(self) -> pd.DataFrame:
        """Per true class: samples, correct, accuracy and the class it is most often mistaken for."""
        matrix = self.confusion().to_numpy()
        rows = []
        for i, name in enumerate(self.class_names):
            support = int(matrix[i].sum())
            wrong = matrix[i].copy()
            wrong[i] = 0
            rows.append({
                "class": name,
                "samples": support,
                "correct": int(matrix[i, i]),
                "accuracy": matrix[i, i] / support if support else float("nan"),
                "most confused with": self.class_names[int(wrong.argmax())] if wrong.any() else "",
            })
        return pd.DataFrame(rows)

    def top_losses(self, k: int = 9) -> pd.DataFrame:
        """The ``k`` samples with the highest loss: index, true and predicted class, loss, p(true class)."""
        order = np.argsort(-self.losses, kind="stable")[:k]
        return pd.DataFrame({
            "index": order.astype(int),
            "true": [self.class_names[int(self.labels[i])] for i in order],
            "predicted": [self.class_names[int(self.predictions[i])] for i in order],
            "loss": self.losses[order],
            "p(true)": self.probabilities[order],
        })

    def is_image(self) -> bool:
        """Whether the kept inputs look like images (H×W, or C×H×W with 1, 3 or 4 channels)."""
        if not self.kept_inputs:
            return False
        shape = next(iter(self.kept_inputs.values())).shape
        return len(shape) == 2 or (len(shape) == 3 and (shape[0] in (1, 3, 4) or shape[-1] in (1, 3, 4)))

    def top_losses_png(self, k: int = 9, columns: int = 6) -> bytes | None:
        """The top-loss images with their true and predicted classes as a PNG (None for non-image data).

        Drawn at 200 dpi for sharpness; ``png_width`` gives the size to show it at (100 px per inch), so the
        titles read at about 11 px on screen.
        """
        if not self.is_image():
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        table = self.top_losses(k)
        table = table[table["index"].isin(self.kept_inputs)]
        count = len(table)
        if not count:
            return None
        columns = min(columns, count)
        rows = -(-count // columns)
        with _render_lock:
            fig = Figure(figsize=(PANEL_INCHES * columns, 1.55 * PANEL_INCHES * rows), dpi=200)
            FigureCanvasAgg(fig)
            for slot, row in enumerate(table.itertuples(index=False)):
                ax = fig.add_subplot(rows, columns, slot + 1)
                image = _as_image(self.kept_inputs[int(row.index)])
                ax.imshow(image, cmap="gray_r" if image.ndim == 2 else None)
                ax.set_title(f"true {row.true}\npredicted {row.predicted}\nloss {row.loss:.2f}", fontsize=8,
                             loc="left")
                ax.axis("off")
            fig.tight_layout(pad=0.4, h_pad=0.8)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
        from .plotting import compact_png

        return compact_png(buffer.getvalue())

    def png_width(self, k: int = 9, columns: int = 6) -> int:
        """Screen width in px of ``top_losses_png(k, columns)``."""
        return int(100 * PANEL_INCHES * min(columns, max(1, min(k, len(self.kept_inputs)))))

    def summary(self) -> str:
        worst = self.per_class().sort_values("accuracy").iloc[0] if len(self.class_names) else None
        text = f"accuracy {self.accuracy:.1%} on {len(self.labels)} samples"
        if worst is not None and np.isfinite(worst["accuracy"]):
            text += f"; weakest class {worst['class']} ({worst['accuracy']:.0%})"
        return text + (" (stopped early: part of the set)" if self.partial else "")

    def _repr_html_(self) -> str:
        confusion = self.confusion().to_html()
        per_class = self.per_class().to_html(index=False, float_format=lambda v: f"{v:.2f}")
        top = self.top_losses().to_html(index=False, float_format=lambda v: f"{v:.3g}")
        return (f"<div class='ms-interpretation'><p><b>Interpretation</b>: {html.escape(self.summary())}</p>"
                f"{confusion}{per_class}{top}</div>")

    def __repr__(self) -> str:
        return f"Interpretation({self.summary()})"


def interpret(net: Any, dataset: Any, class_names: list[str] | None = None, keep: int = 36,
              should_stop: Any = None) -> Interpretation:
    """Predict every sample of ``dataset`` with ``net`` (inference mode) and keep what the tables need."""
    from mindspore import Tensor

    net.set_train(False)
    labels, predictions, losses, probabilities = [], [], [], []
    heap: list[tuple[float, int, np.ndarray]] = []
    seen, partial, n_classes = 0, False, 0
    for columns in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        if should_stop is not None and should_stop():
            partial = True
            break
        if len(columns) < 2:
            raise InterpretError("interpret needs (input, label) columns in the evaluation data")
        x, y = columns[0], np.asarray(columns[1]).reshape(-1)
        logits = net(Tensor(x))
        if isinstance(logits, tuple | list):
            logits = logits[0]
        logits = np.asarray(logits.asnumpy(), dtype=np.float64)
        if logits.ndim != 2 or len(logits) != len(y):
            raise InterpretError(f"interpret needs class scores (batch, classes), got {logits.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= logits.shape[1]:
            raise InterpretError("interpret needs integer class labels in [0, number of classes)")
        n_classes = logits.shape[1]
        logp = _log_softmax(logits)
        sample_loss = -logp[np.arange(len(y)), y]
        labels.append(y.astype(np.int64))
        predictions.append(logits.argmax(axis=1))
        losses.append(sample_loss)
        probabilities.append(np.exp(-sample_loss))
        for i, loss in enumerate(sample_loss):
            item = (float(loss), seen + i, np.array(x[i]))
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        seen += len(y)
    if not labels:
        raise InterpretError("the evaluation data gave no batch")
    labels_all = np.concatenate(labels)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    if len(names) < n_classes:
        raise InterpretError(f"{len(names)} class names for {n_classes} classes")
    return Interpretation(
        labels=labels_all,
        predictions=np.concatenate(predictions),
        losses=np.concatenate(losses),
        probabilities=np.concatenate(probabilities),
        class_names=names,
        kept_inputs={index: image for _, index, image in heap},
        partial=partial,
    )
