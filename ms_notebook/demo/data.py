"""scikit-learn's bundled digits (1,797 8×8 images, offline) as arrays and MindSpore datasets.

Tasks (what :func:`arrays` and :func:`datasets` accept as ``task``):

- ``"pretrain"``: all ten digits, upright, 10 classes. The pretrained checkpoint is trained on its train
  split.
- ``"transfer"``: digits 5–9 **rotated by 90°**, relabelled 0–4 (5 classes), with only ``shots`` labelled
  training images per class (default 20). The head changes shape (10 → 5 outputs) and the inputs come from a
  shifted domain, so what you freeze visibly matters: a frozen backbone trains fast but plateaus (~80 % test
  accuracy), unfreezing the dense block (``plan.train_last(2)``) or everything learns the rotated strokes
  (~90 %).

The split is fixed: a stratified 75 % / 25 % train/test split drawn once with a constant seed, so every
notebook and test sees the same images. Images are float32 in [0, 1], shaped ``(N, 1, 8, 8)``; labels are
int32.

A MindSpore dataset object cannot be used by a second ``Model`` (it raises), so :func:`datasets` returns
*factories*: call ``train()`` / ``eval()`` each time you need a fresh dataset::

    train, evaluate = demo.datasets("transfer", batch_size=16)
    model.train(3, train())
    model.eval(evaluate())

For data-parallel training each rank reads its own shard: ``num_shards=get_group_size(),
shard_id=get_rank()``. The shards are disjoint slices of the same shuffled order (the same ``seed`` on every
rank), padded by wrap-around to equal sizes, so every rank runs the same number of steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

Task = Literal["pretrain", "transfer"]
Split = Literal["train", "test"]

TASKS: dict[str, dict[str, Any]] = {
    "pretrain": {"digits": tuple(range(10)), "rotate": 0, "num_classes": 10},
    "transfer": {"digits": (5, 6, 7, 8, 9), "rotate": 1, "num_classes": 5},
}
SPLIT_SEED = 20241
TEST_FRACTION = 0.25
DEFAULT_SHOTS = 20


def num_classes(task: Task) -> int:
    """Number of classes of ``task`` (10 for "pretrain", 5 for "transfer")."""
    return int(_task(task)["num_classes"])


def _task(task: str) -> dict[str, Any]:
    if task not in TASKS:
        raise ValueError(f"unknown demo task {task!r}; choose one of {sorted(TASKS)}")
    return TASKS[task]


@functools.cache
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All digits, split once: stratified, fixed seed (independent of scikit-learn's own shuffling)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(idx) * TEST_FRACTION)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr = np.sort(np.concatenate(train_idx))
    te = np.sort(np.concatenate(test_idx))
    return images[tr], labels[tr], images[te], labels[te]


def arrays(
    task: Task = "pretrain", split: Split = "train", shots: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, 8, 8)`` float32 and labels ``(N,)`` int32 of ``task``'s ``split``.

    ``shots`` keeps only the first ``shots`` images per class (train split of "transfer" defaults to
    ``DEFAULT_SHOTS``; ``shots=0`` or a negative value is an error, ``None`` elsewhere means all).
    """
    spec = _task(task)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x_tr, y_tr, x_te, y_te = _split()
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    keep = np.isin(y, spec["digits"])
    x, y = x[keep], y[keep]
    if spec["rotate"]:
        x = np.rot90(x, k=spec["rotate"], axes=(1, 2))
    y = np.searchsorted(np.asarray(spec["digits"]), y).astype(np.int32)
    if shots is None and task == "transfer" and split == "train":
        shots = DEFAULT_SHOTS
    if shots is not None:
        if shots < 1:
            raise ValueError(f"shots must be a positive number of images per class, got {shots}")
        picked = np.concatenate([np.flatnonzero(y == c)[:shots] for c in range(spec["num_classes"])])
        picked.sort()
        x, y = x[picked], y[picked]
    return np.ascontiguousarray(x[:, None, :, :], dtype=np.float32), y.astype(np.int32)


def dataset(
    task: Task = "pretrain",
    split: Split = "train",
    batch_size: int = 32,
    shuffle: bool | None = None,
    shots: int | None = None,
    seed: int = 0,
    num_shards: int | None = None,
    shard_id: int | None = None,
):
    """A fresh ``mindspore.dataset`` of ``task``'s ``split`` with columns ``image`` and ``label``.

    Training splits are shuffled by default (deterministically, with ``seed``: the order is drawn in NumPy, so
    the global MindSpore dataset seed is never touched); test splits are not. The last partial batch is kept.
    ``num_shards``/``shard_id``: only this rank's shard (every ``num_shards``-th image of the order, from
    ``shard_id``; shards padded to equal sizes).
    """
    import mindspore.dataset as ds

    _check_shard(num_shards, shard_id)
    x, y = arrays(task, split, shots)
    if shuffle is None:
        shuffle = split == "train"
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(y))
        x, y = x[order], y[order]
    data = ds.NumpySlicesDataset(
        {"image": x, "label": y}, shuffle=False, num_shards=num_shards, shard_id=shard_id
    )
    return data.batch(batch_size, drop_remainder=False)


def _check_shard(num_shards: int | None, shard_id: int | None) -> None:
    if (num_shards is None) != (shard_id is None):
        raise ValueError("give both num_shards and shard_id (or neither)")
    if num_shards is not None and not (isinstance(num_shards, int) and num_shards >= 1
                                       and isinstance(shard_id, int) and 0 <= shard_id < num_shards):
        raise ValueError(f"need num_shards >= 1 and 0 <= shard_id < num_shards, got {num_shards}, {shard_id}")


def datasets(
    task: Task = "pretrain", batch_size: int = 32, shots: int | None = None, seed: int = 0,
    num_shards: int | None = None, shard_id: int | None = None,
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``(train, eval)`` factories, each call a fresh MindSpore dataset (shuffled train, ordered test).

    Factories, not datasets, because one dataset object cannot be consumed by two ``Model`` runs.
    ``num_shards``/``shard_id`` shard the training data (each rank's share); the test split stays whole, so
    every rank evaluates on all of it and reports the same metrics.
    """
    _task(task)
    _check_shard(num_shards, shard_id)

    def train():
        return dataset(task, "train", batch_size, shots=shots, seed=seed, num_shards=num_shards,
                       shard_id=shard_id)

    def evaluate():
        return dataset(task, "test", batch_size)

    train.__name__ = f"{task}_train"
    evaluate.__name__ = f"{task}_eval"
    return train, evaluate
