"""The checkpoint as nested nodes split on ``.``, with per-subtree totals, children in natural order.

Two rules every tree of names in the package follows (the widget's tree model imports them from here):

- ``split_name``: a name splits on ``.`` into at most ``MAX_DEPTH`` levels; the last level keeps the rest
  of the name. Real names are a dozen levels deep; the cap keeps a pathological 40 KB dotted name linear
  in time and memory everywhere a tree is built, drawn or serialised.
- ``natural_key``: siblings are ordered numerically where their labels hold numbers (``layers.2`` before
  ``layers.10``), then as text, the same for every format.

Nothing here recurses over depth, and a node's dotted ``path`` is computed when asked (from its parents),
not stored, so deep names cost memory proportional to their length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from .info import TensorInfo
from .units import format_bytes

MAX_DEPTH = 32
_DIGITS = re.compile(r"(\d+)")
_NO_CHILDREN: Mapping[str, Node] = MappingProxyType({})


def split_name(name: str) -> list[str]:
    """The tree levels of a dotted name: ``name.split(".")``, with at most ``MAX_DEPTH`` levels."""
    return name.split(".", MAX_DEPTH - 1)


def natural_key(label: str) -> tuple:
    """Sort key that orders the digit runs of a label by value (``"w2" < "w10"``), without int() (a label
    may hold thousands of digits)."""
    if label.isdigit():
        digits = label.lstrip("0")
        return (((0, len(digits), digits),), label)
    parts = _DIGITS.split(label)
    key = []
    for i, part in enumerate(parts):
        if i % 2:
            digits = part.lstrip("0")
            key.append((0, len(digits), digits))  # numbers before text at the same position, as "0" < "a"
        elif part:
            key.append((1, 0, part))
    return (tuple(key), label)


class Node:
    """One level of the name hierarchy; ``info`` is set where a value lives. ``path`` is the dotted prefix."""

    __slots__ = ("_kids", "_leaves", "bytes", "info", "name", "parameters", "parent", "tensors")

    def __init__(self, name: str, parent: Node | None = None) -> None:
        self.name = name
        self.parent = parent
        self._kids: dict[str, Node] | None = None  # leaves (most nodes) hold no dict of their own
        # entries not made into nodes yet, one TensorInfo or a list of them: entries right below, and
        # entries one level further down whose own parent node is not made yet either (``_deferred``)
        self._leaves: TensorInfo | list[TensorInfo] | None = None
        self.info: TensorInfo | None = None
        self.tensors = 0
        self.parameters = 0
        self.bytes = 0

    @property
    def children(self) -> Mapping[str, Node]:
        """Child nodes by label, in natural order (read-only). Leaf nodes are made on first use: a
        million-entry tree holds its inner nodes and totals, and makes the leaves of what is looked at."""
        if self._leaves is not None:
            self._grow_leaves()
        return self._kids if self._kids is not None else _NO_CHILDREN

    def _grow_leaves(self) -> None:
        leaves, self._leaves = self._leaves, None
        kids = self._kids if self._kids is not None else {}
        level = self._level()
        for info in _as_list(leaves):
            name = info.name
            if _deferred(name, level):  # below a child node made only now: it holds the entry's totals
                label = name[: name.rfind(".")].rpartition(".")[2]
                node = kids.get(label)
                if node is None:
                    node = kids[label] = Node(label, self)
                node._hold(info)
                continue
            label = _leaf_label(name)
            node = kids.get(label)
            if node is None:
                node = kids[label] = Node(label, self)
            node.info = info  # a later entry of the same name (non-consecutive repeats) is merged already
            node.tensors += 1
            node.parameters += info.numel
            node.bytes += info.nbytes
        self._kids = _sorted(kids)

    def _hold(self, info: TensorInfo) -> None:
        """Keep ``info`` in this node's leaves (not made into a node yet) and count it in the totals."""
        leaves = self._leaves
        if leaves is None:
            self._leaves = info
        elif type(leaves) is list:
            leaves.append(info)
        else:
            self._leaves = [leaves, info]  # type: ignore[list-item]
        self.tensors += 1
        self.parameters += info.numel
        self.bytes += info.nbytes

    def _level(self) -> int:
        """Labels in this node's path (0 for the root)."""
        level = 0
        node = self.parent
        while node is not None:
            level += 1
            node = node.parent
        return level

    @property
    def path(self) -> str:
        """The dotted name of this node (``""`` for the root)."""
        if self.info is not None:
            return self.info.name
        parts = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return ".".join(reversed(parts))

    @property
    def depth(self) -> int:
        """0 for the root's children."""
        depth = -1
        node = self.parent
        while node is not None:
            depth += 1
            node = node.parent
        return depth

    def __iter__(self) -> Iterator[Node]:
        return iter(self.children.values())

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, path: str) -> Node:
        """The descendant at a dotted relative path (``tree["block1.conv"]``); KeyError if absent."""
        node = self
        left = MAX_DEPTH - 1 - self.depth  # levels below this node
        for part in path.split(".", max(left - 1, 0)):
            node = node.children[part]
        return node

    def __repr__(self) -> str:
        return f"Node({self.path or '<root>'!r}, tensors={self.tensors}, parameters={self.parameters})"

    def summary(self) -> dict[str, Any]:
        """This node alone as a JSON-ready dict (no children)."""
        out: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "tensors": self.tensors,
            "parameters": self.parameters,
            "bytes": self.bytes,
        }
        if self.info is not None:
            out["shape"] = list(self.info.shape)
            out["dtype"] = self.info.dtype
            out["group"] = self.info.group
        return out

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        """JSON-serialisable nested dict; ``depth`` limits how many levels of children are included."""
        top = self.summary()
        stack: list[tuple[Node, dict[str, Any], int | None]] = [(self, top, depth)]
        while stack:
            node, out, left = stack.pop()
            if not node.children:
                continue
            if left is not None and left <= 0:
                out["children"] = []
                out["truncated"] = True
                continue
            kids = []
            for child in node.children.values():
                child_out = child.summary()
                kids.append(child_out)
                stack.append((child, child_out, None if left is None else left - 1))
            out["children"] = kids
        return top

    def infos(self) -> list[TensorInfo]:
        """Every entry at or below this node in the order the tree shows them (depth first, natural
        order), without making the leaf nodes not looked at yet."""
        out: list[TensorInfo] = []
        keys: dict[str, tuple] = {}  # label -> natural_key(label), once per distinct label

        def key(label: str) -> tuple:
            found = keys.get(label)
            if found is None:
                found = keys[label] = natural_key(label)
            return found

        stack: list[Node | TensorInfo | list[TensorInfo]] = [self]
        while stack:
            item = stack.pop()
            if isinstance(item, TensorInfo):
                out.append(item)
                continue
            if type(item) is list:  # the entries of a child node not made yet: leaves of it, in order
                if len(item) > 1:
                    item.sort(key=lambda info: key(_leaf_label(info.name)), reverse=True)
                stack.extend(item)
                continue
            assert isinstance(item, Node)
            if item.info is not None:
                out.append(item.info)
            kids: dict[str, Node | TensorInfo | list[TensorInfo]] = dict(item._kids) if item._kids else {}
            if item._leaves is not None:
                level = item._level()
                for info in _as_list(item._leaves):
                    name = info.name
                    if _deferred(name, level):
                        label = name[: name.rfind(".")].rpartition(".")[2]
                        below = kids.get(label)
                        if below is None:
                            kids[label] = [info]
                            continue
                        if type(below) is list:
                            below.append(info)
                            continue
                    else:
                        label = _leaf_label(name)
                        if label not in kids:
                            kids[label] = info
                            continue
                    # an entry that is also a prefix: grow this node's leaves for real
                    item._grow_leaves()
                    kids = dict(item._kids)  # type: ignore[arg-type]
                    break
            if len(kids) > 1 and item._leaves is not None:  # without leaves _kids is in order already
                stack.extend(kids[label] for label in sorted(kids, key=key, reverse=True))
            elif len(kids) > 1:
                stack.extend(reversed(kids.values()))
            else:
                stack.extend(kids.values())
        return out

    def walk(self) -> Iterator[Node]:
        """This node and every descendant, depth first, children in order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children.values()))


def _as_list(leaves: TensorInfo | list[TensorInfo] | None) -> list[TensorInfo]:
    """A node's ``_leaves`` as a list."""
    if leaves is None:
        return []
    return leaves if type(leaves) is list else [leaves]  # type: ignore[list-item]


def _deferred(name: str, level: int) -> bool:
    """Whether an entry waiting in the leaves of a node ``level`` labels deep sits one level further down
    (``build_tree`` leaves a new parent of entries unmade until its parent's children are asked for)."""
    dots = name.count(".")
    return dots == level + 1 and dots < MAX_DEPTH


def _leaf_label(name: str) -> str:
    """The label of the last level of ``name`` (``split_name(name)[-1]``, cheaply)."""
    return name.rpartition(".")[2] if name.count(".") < MAX_DEPTH else split_name(name)[-1]


def build_tree(entries: Iterable[TensorInfo]) -> Node:
    """Nest entries by their dotted names; every node totals the tensors, elements and bytes below it.

    Each entry finds its parent by its dotted prefix (one lookup for siblings, the common case) and is
    added to that parent's totals and list of leaves; inner nodes are created as needed, and their totals
    are added up once per node, children before parents. The cost is the names' length plus the number of
    inner nodes; leaf nodes are made when their parent's children are first asked for, and so are the
    parents of entries that appear below an existing node (the next block's ``conv``): their entries wait
    one level up, counted there. A million entries each in a block of its own then make no million nodes
    until someone looks.
    """
    root = Node("")
    order: list[Node] = []  # every inner node after its parent
    # dotted prefix -> its node, while building: the nodes above the entries' parents (a parent of
    # entries is found below them, so a million parents do not hold a million prefix strings here)
    inner: dict[str, Node] = {"": root}
    labels: dict[str, str] = {}  # one string object per distinct label
    get = inner.get
    last: str | None = None  # the previous entry's prefix (of ``parent``): siblings mostly follow each other
    parent = root
    for info in entries:
        name = info.name
        if name.count(".") < MAX_DEPTH:
            prefix = name.rpartition(".")[0]
            if prefix != last:
                last = prefix
                up, _, label = prefix.rpartition(".")
                above = get(prefix) if not up else get(up)
                if not up and above is not None:
                    parent = above  # a prefix of one level (or the root) that is known already
                elif above is not None:
                    kids = above._kids
                    parent = kids.get(label) if kids is not None else None  # type: ignore[assignment]
                    if parent is None:
                        # the common case, a new parent below a known node (the next block): its node is
                        # made when ``above``'s children are first asked for; until then its entries wait
                        # in ``above``'s leaves and count in ``above``'s totals
                        parent = above
                else:
                    parent = _inner_node(prefix, inner, order, labels)
        else:  # deeper than the cap: the last level keeps the rest of the name
            last = None
            parent = _inner_node(".".join(split_name(name)[:-1]), inner, order, labels)
        parent._hold(info)
    for node in reversed(order):
        up = node.parent
        up.tensors += node.tensors  # type: ignore[union-attr]
        up.parameters += node.parameters  # type: ignore[union-attr]
        up.bytes += node.bytes  # type: ignore[union-attr]
    keys: dict[str, tuple] = {}  # label -> natural_key(label), once per distinct label
    for node in order:  # inner nodes without leaves of their own: their children are final already
        if node._leaves is None and node._kids is not None and len(node._kids) > 1:
            node._kids = _sorted(node._kids, keys)
    if root._leaves is None and root._kids is not None:
        root._kids = _sorted(root._kids, keys)
    return root


def _sorted(kids: dict[str, Node], keys: dict[str, tuple] | None = None) -> dict[str, Node]:
    """``kids`` in natural order of their labels (the same dict when already in order); ``keys`` caches
    ``natural_key`` of the labels seen."""
    if len(kids) < 2:
        return kids
    if keys is None:
        order = sorted(kids, key=natural_key)
    else:
        for label in kids:
            if label not in keys:
                keys[label] = natural_key(label)
        order = sorted(kids, key=keys.__getitem__)
    return kids if order == list(kids) else {label: kids[label] for label in order}


def _inner_node(prefix: str, inner: dict[str, Node], order: list[Node], labels: dict[str, str]) -> Node:
    """The node of a dotted prefix (fewer than MAX_DEPTH levels), creating it and its missing ancestors."""
    missing = []
    while prefix not in inner:
        missing.append(prefix)
        prefix = prefix.rpartition(".")[0]
    node = inner[prefix]
    for path in reversed(missing):
        label = path.rpartition(".")[2]
        kids = node._kids
        if kids is None:
            kids = node._kids = {}
        child = kids.get(label)
        if child is None:
            label = labels.setdefault(label, label)
            child = kids[label] = Node(label, node)
            order.append(child)
        inner[path] = child
        node = child
    return node


def render(node: Node, depth: int | None = None, indent: str = "") -> list[str]:
    """Text lines of the tree for a terminal: name, shape/dtype at leaves, totals at branches."""
    lines: list[str] = []
    stack: list[tuple[Node, int]] = [(child, 0) for child in reversed(node.children.values())]
    while stack:
        child, level = stack.pop()
        pad = indent + "  " * level
        if child.info is not None and not child.children:
            info = child.info
            shape = "x".join(map(str, info.shape)) or "scalar"
            lines.append(f"{pad}{child.name}  {shape} {info.dtype}  {_size(child.bytes)}")
            continue
        lines.append(
            f"{pad}{child.name}/  {child.tensors} tensors, {child.parameters:,} params, {_size(child.bytes)}"
        )
        if depth is None or level + 1 < depth:
            stack.extend((grandchild, level + 1) for grandchild in reversed(child.children.values()))
    return lines


# sizes are written by the one rule in units.py ("4.5 KiB"); index.py imports format_size from here
_size = format_size = format_bytes
