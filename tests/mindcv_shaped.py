"""Small networks named the way mindcv names its architectures, sized for 1×8×8 digits so they train in
seconds: the block rule, prefixes and discriminative rates are tested on the shapes real models have.

- ``ResNetLike``: ``conv1, bn1, layer1 … layer4`` (numbered residual blocks), ``classifier``;
- ``ViTLike``: root parameters ``cls_token, pos_embed``, ``patch_embed.proj``, ``blocks.0 …``, ``norm``,
  ``head`` (the blocks hold most parameters);
- ``SwinLike``: stages appended to an empty ``CellList`` as mindcv does, so MindSpore names every stage's
  parameters under ``0.`` (``0.blocks.1.blocks.0.weight``) while the cells are ``layers.1.blocks.0``;
- ``DenseNetLike``: everything under ``features`` (``conv0, norm0, denseblock1, transition1, …``);
- ``MobileNetLike``: ``features.0 … features.N`` and a ``classifier`` sequence;
- ``InceptionLike``: named stems and mixed blocks, an auxiliary head ``aux.fc`` and a ``classifier``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops


class _Basic(nn.Cell):
    """A ResNet basic block: conv-bn-relu-conv-bn plus a 1×1 projection when the width changes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, has_bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, has_bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None if cin == cout else nn.SequentialCell([nn.Conv2d(cin, cout, 1, has_bias=False),
                                                               nn.BatchNorm2d(cout)])

    def construct(self, x):
        skip = x if self.down is None else self.down(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + skip)


class ResNetLike(nn.Cell):
    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (8, 8, 16, 24, 32)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, has_bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = nn.SequentialCell([_Basic(widths[0], widths[1]), _Basic(widths[1], widths[1])])
        self.layer2 = nn.SequentialCell([_Basic(widths[1], widths[2])])
        self.layer3 = nn.SequentialCell([_Basic(widths[2], widths[3])])
        self.layer4 = nn.SequentialCell([_Basic(widths[3], widths[4])])
        self.classifier = nn.Dense(widths[4], num_classes)

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(x.mean(axis=(2, 3)))


class _Attention(nn.Cell):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Dense(dim, 3 * dim)
        self.proj = nn.Dense(dim, dim)
        self.scale = dim**-0.5

    def construct(self, x):
        q, k, v = ops.split(self.qkv(x), x.shape[-1], axis=-1)
        attn = ops.softmax(ops.bmm(q, k.transpose(0, 2, 1)) * self.scale, axis=-1)
        return self.proj(ops.bmm(attn, v))


class _Mlp(nn.Cell):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Dense(dim, 2 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Dense(2 * dim, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _ViTBlock(nn.Cell):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,))
        self.attn = _Attention(dim)
        self.norm2 = nn.LayerNorm((dim,))
        self.mlp = _Mlp(dim)

    def construct(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Cell):
    def __init__(self, dim: int, norm: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, 2, stride=2, pad_mode="valid", has_bias=True)
        self.norm = nn.LayerNorm((dim,)) if norm else None

    def construct(self, x):
        x = self.proj(x)  # N, dim, 4, 4
        x = x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)  # N, 16, dim
        return x if self.norm is None else self.norm(x)


class ViTLike(nn.Cell):
    def __init__(self, num_classes: int = 10, dim: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.cls_token = Parameter(Tensor(np.zeros((1, 1, dim), np.float32)), name="cls_token")
        self.pos_embed = Parameter(Tensor(np.random.default_rng(0).normal(0, 0.02, (1, 17, dim)), ms.float32),
                                   name="pos_embed")
        self.patch_embed = _PatchEmbed(dim)
        self.blocks = nn.CellList([_ViTBlock(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm((dim,))
        self.head = nn.Dense(dim, num_classes)

    def construct(self, x):
        x = self.patch_embed(x)
        cls = ops.broadcast_to(self.cls_token, (x.shape[0], 1, x.shape[2]))
        x = ops.concat((cls, x), axis=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class _Stage(nn.Cell):
    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.CellList([_Mlp(dim) for _ in range(depth)])
        self.downsample = nn.Dense(dim, dim)

    def construct(self, x):
        for block in self.blocks:
            x = x + block(x)
        return self.downsample(x)


class SwinLike(nn.Cell):
    def __init__(self, num_classes: int = 10, dim: int = 16, depths: tuple[int, ...] = (1, 2, 2)) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(dim, norm=True)
        self.layers = nn.CellList()
        for depth in depths:  # appended one by one, as mindcv does: MindSpore names them all under "0."
            self.layers.append(_Stage(dim, depth))
        self.norm = nn.LayerNorm((dim,))
        self.classifier = nn.Dense(dim, num_classes)

    def construct(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.norm(x).mean(axis=1))


def _conv_bn(cin: int, cout: int) -> nn.SequentialCell:
    return nn.SequentialCell([nn.Conv2d(cin, cout, 3, has_bias=False), nn.BatchNorm2d(cout), nn.ReLU()])


class DenseNetLike(nn.Cell):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.SequentialCell(OrderedDict([
            ("conv0", nn.Conv2d(1, 8, 3, has_bias=False)),
            ("norm0", nn.BatchNorm2d(8)),
            ("relu0", nn.ReLU()),
            ("denseblock1", _conv_bn(8, 16)),
            ("transition1", _conv_bn(16, 16)),
            ("denseblock2", _conv_bn(16, 24)),
            ("norm5", nn.BatchNorm2d(24)),
        ]))
        self.classifier = nn.Dense(24, num_classes)

    def construct(self, x):
        return self.classifier(self.features(x).mean(axis=(2, 3)))


class MobileNetLike(nn.Cell):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        widths = (8, 8, 12, 16, 24, 32)
        layers: list[nn.Cell] = [nn.Conv2d(1, widths[0], 3, has_bias=False), nn.BatchNorm2d(widths[0])]
        layers += [nn.ReLU(), *(_conv_bn(a, b) for a, b in itertools.pairwise(widths))]
        self.features = nn.SequentialCell(layers)
        self.classifier = nn.SequentialCell([nn.Dense(widths[-1], 64), nn.ReLU(), nn.Dense(64, num_classes)])

    def construct(self, x):
        return self.classifier(self.features(x).mean(axis=(2, 3)))


class _Aux(nn.Cell):
    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv = _conv_bn(cin, 8)
        self.fc = nn.Dense(8, num_classes)

    def construct(self, x):
        return self.fc(self.conv(x).mean(axis=(2, 3)))


class InceptionLike(nn.Cell):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1a = _conv_bn(1, 8)
        self.conv2a = _conv_bn(8, 8)
        self.inception5b = _conv_bn(8, 16)
        self.inception6a = _conv_bn(16, 16)
        self.aux = _Aux(16, num_classes)
        self.inception7a = _conv_bn(16, 24)
        self.classifier = nn.Dense(24, num_classes)

    def construct(self, x):
        x = self.inception6a(self.inception5b(self.conv2a(self.conv1a(x))))
        return self.classifier(self.inception7a(x).mean(axis=(2, 3)))


class Wrapped(nn.Cell):
    """A network saved inside a wrapper: its checkpoint names every weight ``backbone.…``."""

    def __init__(self, backbone: nn.Cell) -> None:
        super().__init__()
        self.backbone = backbone

    def construct(self, x):
        return self.backbone(x)
