"""The checkpoint tree against a plain nested-dict reference: structure, totals, natural order and the order
views list, however the tree was grown (nodes are made lazily, parents of new blocks included)."""

from __future__ import annotations

import random

import mindspore as ms
import numpy as np
import pytest

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.checkpoint.tree import natural_key, split_name

LABELS = ["a", "b", "layers", "0", "1", "2", "10", "conv", "weight", "bias", "x2", "x10"]


def _names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        depth = rng.choice([1, 2, 2, 3, 3, 3, 4, 5])
        names.add(".".join(rng.choice(LABELS) for _ in range(depth)))
    ordered = sorted(names)
    rng.shuffle(ordered)  # file order is not tree order: siblings apart, parents after children
    return ordered


def _reference(names: list[str], sizes: dict[str, int]) -> tuple[list[tuple], list[str]]:
    """(path, tensors, parameters) of every node depth first, and the entries in that order."""
    root: dict = {}
    for name in names:
        node = root
        for label in split_name(name):
            node = node.setdefault(label, {})
        node[None] = name  # the entry that lives here
    rows: list[tuple] = []
    order: list[str] = []

    def visit(node: dict, path: str) -> tuple[int, int]:
        tensors = parameters = 0
        row = len(rows)
        rows.append(None)
        if None in node:
            order.append(node[None])
            tensors, parameters = 1, sizes[node[None]]
        for label in sorted((k for k in node if k is not None), key=natural_key):
            t, p = visit(node[label], f"{path}.{label}" if path else label)
            tensors += t
            parameters += p
        rows[row] = (path, tensors, parameters)
        return tensors, parameters

    visit(root, "")
    return rows, order


def _dump(node) -> list[tuple]:
    rows, stack = [], [node]
    while stack:
        item = stack.pop()
        rows.append((item.path, item.tensors, item.parameters))
        stack.extend(reversed(list(item.children.values())))
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_tree_matches_a_nested_dict_reference_however_it_is_grown(tmp_path, seed):
    rng = random.Random(seed)
    names = _names(rng, rng.randint(20, 60))
    params = [{"name": n, "data": ms.Tensor(np.zeros(1 + i % 3, np.float32))} for i, n in enumerate(names)]
    path = tmp_path / "names.ckpt"
    ms.save_checkpoint(params, str(path))
    sizes = {n: 1 + i % 3 for i, n in enumerate(names)}
    rows, order = _reference(names, sizes)

    ck = open_checkpoint(path)
    assert [info.name for info in ck.tree_order()] == order  # listed before any node was looked at
    assert _dump(ck.tree()) == rows

    fresh = open_checkpoint(path).tree()
    node = fresh
    for _ in range(rng.randint(1, 3)):  # look at a few nodes first, then list everything
        kids = list(node.children.values())
        if not kids:
            break
        node = rng.choice(kids)
    assert [info.name for info in fresh.infos()] == order
    assert _dump(fresh) == rows
    for path_, tensors, parameters in rows[1:]:
        found = fresh[path_]
        assert (found.tensors, found.parameters) == (tensors, parameters)


def test_a_block_whose_parent_appears_later_and_deeper_keeps_its_totals(tmp_path):
    """``m.b1.conv.w`` waits one level up until ``m.b1.conv.sub.w`` makes ``m.b1.conv`` a node."""
    names = ["m.b0.conv.w", "m.b1.conv.w", "m.b1.conv.bias", "m.b2.x", "m.b1.conv.sub.w", "m.b1.conv"]
    params = [{"name": n, "data": ms.Tensor(np.zeros(2, np.float32))} for n in names]
    path = tmp_path / "later.ckpt"
    ms.save_checkpoint(params, str(path))
    tree = open_checkpoint(path).tree()
    conv = tree["m.b1.conv"]
    assert conv.info is not None and conv.info.name == "m.b1.conv"  # an entry that is also a prefix
    assert (conv.tensors, conv.parameters) == (4, 8)
    assert [c.name for c in conv.children.values()] == ["bias", "sub", "w"]
    assert tree["m"].tensors == 6 and tree["m.b0.conv"].tensors == 1
    assert [info.name for info in tree["m.b1"].infos()] == [
        "m.b1.conv", "m.b1.conv.bias", "m.b1.conv.sub.w", "m.b1.conv.w"]
