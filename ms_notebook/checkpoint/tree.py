"""The checkpoint as nested nodes split on ``.``, with per-subtree totals, in file order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .info import TensorInfo


class Node:
    """One level of the name hierarchy: ``path`` is the dotted prefix, ``info`` is set where a value lives."""

    __slots__ = ("bytes", "children", "info", "name", "parameters", "path", "tensors")

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.children: dict[str, Node] = {}
        self.info: TensorInfo | None = None
        self.tensors = 0
        self.parameters = 0
        self.bytes = 0

    def __iter__(self):
        return iter(self.children.values())

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, path: str) -> Node:
        """The descendant at a dotted relative path (``tree["block1.conv"]``)."""
        node = self
        for part in path.split("."):
            node = node.children[part]
        return node

    def __repr__(self) -> str:
        return f"Node({self.path or '<root>'!r}, tensors={self.tensors}, parameters={self.parameters})"

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        """JSON-serialisable nested dict; ``depth`` limits how many levels of children are included."""
        out: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "tensors": self.tensors,
            "parameters": self.parameters,
            "bytes": self.bytes,
        }
        if self.info is not None:
            info = self.info
            out["shape"] = list(info.shape)
            out["dtype"] = info.dtype
            out["group"] = info.group
        if self.children and (depth is None or depth > 0):
            nxt = None if depth is None else depth - 1
            out["children"] = [child.to_dict(nxt) for child in self.children.values()]
        elif self.children:
            out["children"] = []
            out["truncated"] = True
        return out


def build_tree(entries: Iterable[TensorInfo]) -> Node:
    """Nest entries by their dotted names; every node totals the tensors, elements and bytes below it."""
    root = Node("", "")
    for info in entries:
        numel, nbytes = info.numel, info.nbytes
        node = root
        root.tensors += 1
        root.parameters += numel
        root.bytes += nbytes
        parts = info.name.split(".")
        for i, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = Node(part, ".".join(parts[: i + 1]))
                node.children[part] = child
            child.tensors += 1
            child.parameters += numel
            child.bytes += nbytes
            node = child
        node.info = info
    return root


def render(node: Node, depth: int | None = None, indent: str = "") -> list[str]:
    """Text lines of the tree for a terminal: name, shape/dtype at leaves, totals at branches."""
    lines = []
    for child in node.children.values():
        if child.info is not None and not child.children:
            info = child.info
            shape = "x".join(map(str, info.shape)) or "scalar"
            lines.append(f"{indent}{child.name}  {shape} {info.dtype}  {_size(child.bytes)}")
            continue
        lines.append(
            f"{indent}{child.name}/  {child.tensors} tensors, {child.parameters:,} params, "
            f"{_size(child.bytes)}"
        )
        if depth is None or depth > 1:
            lines.extend(render(child, None if depth is None else depth - 1, indent + "  "))
    return lines


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


format_size = _size
