"""Shared set-up for the transfer tests: a small conv+BN CNN, sklearn digits, real pretraining."""

from __future__ import annotations

import numpy as np
from mindspore import nn


class SmallNet(nn.Cell):
    """block1 (conv+bn), block2 (conv+bn+pool), block3 (dense), head (Dense to ``num_classes``)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.block1 = _ConvBN(1, 4)
        self.block2 = _ConvBN(4, 8, pool=True)
        self.block3 = _Dense(8 * 4 * 4, 16)
        self.head = nn.Dense(16, num_classes)

    def construct(self, x):
        return self.head(self.block3(self.block2(self.block1(x))))


class _ConvBN(nn.Cell):
    def __init__(self, cin: int, cout: int, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, pad_mode="same", has_bias=False)
        self.bn = nn.BatchNorm2d(cout, momentum=0.5)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2) if pool else nn.Identity()

    def construct(self, x):
        return self.pool(self.relu(self.bn(self.conv(x))))


class _Dense(nn.Cell):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.dense = nn.Dense(cin, cout)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.dense(self.flatten(x)))


def digits(n: int = 256, num_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scaled 1×8×8 digit images and labels folded into ``num_classes`` classes."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.target), size=n, replace=False)
    x = (data.images[idx] / 16.0).astype(np.float32).reshape(n, 1, 8, 8)
    y = (data.target[idx] % num_classes).astype(np.int32)
    return x, y


def train_steps(net: nn.Cell, optimizer: nn.Optimizer, steps: int, num_classes: int, batch: int = 32) -> None:
    """A few real training steps with TrainOneStepCell (built after the optimizer, as the plan requires)."""
    from mindspore import Tensor

    x, y = digits(batch * steps, num_classes)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)
    step.set_train(True)
    for i in range(steps):
        step(Tensor(x[i * batch : (i + 1) * batch]), Tensor(y[i * batch : (i + 1) * batch]))


def model_train(net: nn.Cell, optimizer: nn.Optimizer, steps: int, num_classes: int, batch: int = 32) -> None:
    """Train through ``mindspore.train.Model`` (which calls ``set_train(True)`` on the whole network)."""
    import mindspore.dataset as ds
    from mindspore.train import Model

    x, y = digits(batch * steps, num_classes, seed=1)
    data = ds.NumpySlicesDataset({"image": x, "label": y}, shuffle=False).batch(batch)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    Model(net, loss, optimizer).train(1, data, dataset_sink_mode=False)


def save_pretrained(path: str, optimizer_kind: str = "momentum", steps: int = 6) -> SmallNet:
    """Pretrain a 10-class SmallNet; save network + optimizer state (ModelCheckpoint style)."""
    import mindspore as ms

    ms.set_seed(0)
    net = SmallNet(10)
    if optimizer_kind == "momentum":
        opt = nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9)
    else:
        opt = nn.Adam(net.trainable_params(), learning_rate=0.01)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    cell = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    cell.set_train(True)
    x, y = digits(32 * steps, 10)
    for i in range(steps):
        cell(ms.Tensor(x[i * 32 : (i + 1) * 32]), ms.Tensor(y[i * 32 : (i + 1) * 32]))
    ms.save_checkpoint(cell, path)
    return net


def values(net: nn.Cell) -> dict[str, np.ndarray]:
    """Copy of every parameter's value, by name."""
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}
