"""Blocks of a checkpoint from its names alone: ``TransferPlan``'s block rule applied to the dotted-name tree.

``transfer.blocks`` splits a network by its cells; a checkpoint without its network has only names, whose
dotted levels stand for the cells. The rule is the same (``MIN_BLOCKS``, ``MAX_SHARE``): start from the
root's parts (child nodes holding tensors, plus tensors right under the root, each a block named after
itself), looking through single-child chains; while there are fewer than ``MIN_BLOCKS`` blocks or one holds
more than ``MAX_SHARE`` of the values, split the largest splittable block into its parts. A node splits when
it has at least two child nodes (a layer, whose children are all tensors, never does). So DigitsNet gives
``block1, block2, block3, head`` and a ResNet ``conv1, bn1, layer1 … layer4, classifier``, as TransferPlan.
"""

from __future__ import annotations

from collections.abc import Iterable

from .info import TensorInfo
from .tree import Node, build_tree

MIN_BLOCKS = 4
MAX_SHARE = 0.8


def _parts(node: Node) -> list[Node] | None:
    """The parts of ``node`` (looking through single-child chains), or None when it cannot be split."""
    while True:
        kids = list(node.children.values())
        inner = [k for k in kids if k.info is None]
        own = [k for k in kids if k.info is not None]
        if not own and len(inner) == 1:
            node = inner[0]
            continue
        break
    if len(inner) < 2:
        return None
    return own + inner


def name_blocks(entries: Iterable[TensorInfo]) -> dict[str, list[str]]:
    """``{block path: [tensor names]}`` in tree order for ``entries`` (weights, normally)."""
    root = build_tree(entries)
    blocks = _parts(root) or [root]
    total = max(1, root.parameters)
    while True:
        too_few = len(blocks) < MIN_BLOCKS
        big = [b for b in blocks if b.parameters > MAX_SHARE * total]
        candidates = sorted(blocks if too_few else big, key=lambda b: -b.parameters)
        split = next(((b, s) for b in candidates if b.info is None and (s := _parts(b))), None)
        if split is None:
            break
        i = next(i for i, b in enumerate(blocks) if b is split[0])
        blocks[i : i + 1] = split[1]
    out: dict[str, list[str]] = {}
    for b in blocks:
        key = b.path or "(root)"
        out[key] = [b.info.name] if b.info is not None else [i.name for i in b.infos()]
    return out
