"""DigitsNet: the small CNN every tutorial uses, sized for 1×8×8 digit images.

Four top-level blocks, in order, so that transfer plans can reason about "the backbone" and "the head":

- ``block1``: Conv2d(1→16, 3×3, pad_mode='same') + BatchNorm2d + ReLU       → 16×8×8
- ``block2``: Conv2d(16→32, 3×3, pad_mode='same') + BatchNorm2d + ReLU + MaxPool(2) → 32×4×4
- ``block3``: Flatten + Dense(512→64) + ReLU
- ``head``:   Dense(64→num_classes)

Parameter names follow the attribute paths: ``block1.conv.weight``, ``block1.bn.moving_mean``,
``block3.dense.weight``, ``head.weight``, ``head.bias``.
"""

from __future__ import annotations

import math

import numpy as np
from mindspore import Parameter, Tensor, nn

C1, C2, HIDDEN = 8, 16, 64


class ConvBlock(nn.Cell):
    """Conv2d + BatchNorm2d + ReLU, optionally followed by a 2×2 max pool."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = False) -> None:
        super().__init__()
        # nn.Conv2d pads 'same' by default in MindSpore: an 8×8 input stays 8×8.
        self.conv = nn.Conv2d(in_channels, out_channels, 3, pad_mode="same", has_bias=False)
        self.bn = nn.BatchNorm2d(out_channels, momentum=0.9)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2) if pool else None

    def construct(self, x):
        x = self.relu(self.bn(self.conv(x)))
        if self.pool is not None:
            x = self.pool(x)
        return x


class DenseBlock(nn.Cell):
    """Flatten + Dense + ReLU: the hidden representation the head classifies."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.dense = nn.Dense(in_features, out_features)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.dense(self.flatten(x)))


class DigitsNet(nn.Cell):
    """Small CNN for 1×8×8 digits: ``block1``, ``block2``, ``block3`` and a ``head`` of ``num_classes``.

    ``seed`` makes the initial weights reproducible without touching MindSpore's global seed (weights are
    drawn with NumPy's generator, He-uniform for weights, zeros for biases).
    """

    def __init__(self, num_classes: int = 10, seed: int | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.block1 = ConvBlock(1, C1)
        self.block2 = ConvBlock(C1, C2, pool=True)
        self.block3 = DenseBlock(C2 * 4 * 4, HIDDEN)
        self.head = nn.Dense(HIDDEN, num_classes)
        if seed is not None:
            reinitialize(self, seed)

    def construct(self, x):
        return self.head(self.block3(self.block2(self.block1(x))))


def reinitialize(net: nn.Cell, seed: int) -> None:
    """Re-draw every trainable weight of ``net`` from NumPy's generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    for name, param in net.parameters_and_names():
        if not isinstance(param, Parameter) or not param.requires_grad:
            continue
        shape = tuple(param.shape)
        if name.endswith(".weight") and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            bound = math.sqrt(6.0 / fan_in)
            value = rng.uniform(-bound, bound, size=shape)
        elif name.endswith(".gamma"):
            value = np.ones(shape)
        else:  # biases, beta
            value = np.zeros(shape)
        param.set_data(Tensor(value.astype(np.float32)))
