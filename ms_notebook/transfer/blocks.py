"""Blocks of a network: the steps ``train_last(n)``, discriminative learning rates and the panel move in.

A block is a cell of the network's hierarchy (``cells_and_names``) with the parameters below it, or a loose
parameter owned directly by a container (a ViT's ``cls_token``). The rule, in one place:

1. Start from the network's parts: its child cells that own parameters, plus its own parameters. A container
   holding a single child (a wrapper, ``SequentialCell([backbone])``) is looked through first.
2. While there are fewer than ``MIN_BLOCKS`` blocks, or one block holds more than ``MAX_SHARE`` of the
   parameters, split the largest block that can be split into its parts (again looking through single-child
   chains). A cell can be split when it has at least two child cells owning parameters; a layer (a Dense, a
   Conv2d) never is.

So a ResNet gives ``conv1, bn1, layer1 … layer4, classifier``; a ViT ``cls_token, pos_embed, patch_embed,
blocks.0 … blocks.11, norm, head`` (``blocks`` held 96 % of the parameters); a Swin or RegNet, whose stages
all carry parameter names under ``0.``, ``layers.0 … layers.3`` by their cells; MobileNet, DenseNet,
EfficientNet and ConvNeXt the numbered stages of ``features``. Parameters are matched by object, never by
name, because parameter names need not follow cell paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_BLOCKS = 4
MAX_SHARE = 0.8


@dataclass(frozen=True)
class Block:
    """A cell path (or a loose parameter's name) and the names of the parameters in it, in network order."""

    path: str
    names: tuple[str, ...]
    numel: int


class _Part:
    """A candidate block while the rule runs: a cell (with its path) or a loose parameter."""

    def __init__(self, path: str, cell: Any = None, param: Any = None) -> None:
        self.path, self.cell, self.param = path, cell, param
        params = [param] if param is not None else list(cell.get_parameters())
        self.params = params
        self.numel = sum(int(p.size) for p in params)


def _children_with_params(cell: Any, path: str) -> list[_Part]:
    out = []
    for name, child in cell.name_cells().items():
        if child is None:
            continue
        part = _Part(f"{path}.{name}" if path else name, cell=child)
        if part.params:
            out.append(part)
    return out


def _split(part: _Part) -> list[_Part] | None:
    """The parts of a cell (looking through single-child chains), or None when it cannot be split."""
    cell, path = part.cell, part.path
    if cell is None:
        return None
    while True:
        own = list(cell.get_parameters(expand=False))
        children = _children_with_params(cell, path)
        if not own and len(children) == 1:  # a wrapper: look through it
            cell, path = children[0].cell, children[0].path
            continue
        break
    if len(children) < 2:
        return None
    # a loose parameter is a block named after itself (parameter names are what patterns match)
    return [_Part(str(p.name), param=p) for p in own] + children


def network_blocks(net: Any) -> list[Block]:
    """The network's blocks in network order (see the module docstring for the rule)."""
    order: dict[int, int] = {}
    names: dict[int, str] = {}
    for index, param in enumerate(net.get_parameters()):
        order.setdefault(id(param), index)
        names.setdefault(id(param), str(param.name))
    total = sum(int(p.size) for p in net.get_parameters()) or 1
    root = _Part("", cell=net)
    if not root.params:
        return []
    parts = _split(root) or [root]
    while True:
        too_few = len(parts) < MIN_BLOCKS
        big = [p for p in parts if p.numel > MAX_SHARE * total]
        candidates = sorted(parts if too_few else big, key=lambda p: -p.numel)
        split = next(((p, s) for p in candidates if (s := _split(p))), None)
        if split is None:
            break
        index = parts.index(split[0])
        parts[index : index + 1] = split[1]
    blocks, seen = [], set()
    for part in parts:
        mine = [p for p in part.params if id(p) not in seen]  # a shared parameter counts once, first place
        seen.update(id(p) for p in mine)
        if mine:
            mine.sort(key=lambda p: order[id(p)])
            block = Block(part.path or "(network)", tuple(names[id(p)] for p in mine),
                          sum(int(p.size) for p in mine))
            blocks.append((order[id(mine[0])], block))
    blocks.sort(key=lambda item: item[0])
    return [block for _, block in blocks]


def cell_parameters(net: Any) -> dict[str, list[str]]:
    """Cell path -> names of the parameters below it: lets a cell path select parameters named otherwise."""
    out: dict[str, list[str]] = {}
    for path, cell in net.cells_and_names():
        if path:
            out[path] = list(dict.fromkeys(str(p.name) for p in cell.get_parameters()))
    return out
