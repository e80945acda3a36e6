"""The small real dataset most run tests train on: scikit-learn's bundled digits as MindSpore datasets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mindspore.dataset import NumpySlicesDataset
from sklearn.datasets import load_digits


def digits(start: int, count: int, batch: int = 32) -> Callable[[], NumpySlicesDataset]:
    """A factory of fresh, unshuffled datasets over ``count`` digits from ``start`` (8×8, scaled to [0, 1]).

    A factory, because a MindSpore dataset cannot be reused by a second ``Model``.
    """
    data = load_digits()
    images = (data.images[start:start + count] / 16.0).astype(np.float32)[:, None]
    labels = data.target[start:start + count].astype(np.int32)
    columns = ["image", "label"]
    return lambda: NumpySlicesDataset((images, labels), column_names=columns, shuffle=False).batch(batch)
