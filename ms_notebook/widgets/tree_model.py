"""Tree model behind the tree view: dotted names as nodes, expand state, filters, toggles, check columns.

Plain Python (no widgets, no MindSpore) so every rule the user sees is tested without a browser. The model
takes entries shaped like ``TensorInfo`` (``name, shape, dtype, numel, nbytes, group``) and produces the flat
list of rows that are visible right now; the widget (``tree.py``) only ships those rows to the browser.

Rules:
- Names split on ``.`` into a tree (``checkpoint.tree.split_name``: at most 32 levels), siblings in natural
  order (``layers.2`` before ``layers.10``, ``checkpoint.tree.natural_key``), the same tree the Checkpoint
  Viewer shows; an inner node carries the totals (tensors, parameters, bytes) of its visible leaves.
- Groups in ``hidden_groups`` (default: optimizer and extra) are hidden entirely.
- A filter keeps matching leaves plus their ancestors. The syntax (substring, glob ``*.weight``, segments
  ``/bn/``, ``/regex/`` or ``re:``) is ``checkpoint.filters``, the same the Checkpoint Viewer's server uses.
  Setting a filter expands the ancestors of every match; clearing it restores the expand state from before.
- ``statuses`` maps a node id to a CSS status class (``shape_mismatch`` …); ``only_statuses`` keeps only
  leaves whose status is in that set (the browser's "only problems" toggle).
- Check columns hold a set of checked leaf ids each. An inner node shows ``True`` / ``False`` / ``"mixed"``
  over its visible leaves; toggling an inner node checks its visible leaves unless all are already checked.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ms_notebook.checkpoint.filters import compile_filter
from ms_notebook.checkpoint.tree import natural_key, split_name
from ms_notebook.checkpoint.units import format_bytes, format_count

DEFAULT_HIDDEN_GROUPS = frozenset({"optimizer", "extra"})


@dataclass(frozen=True)
class Column:
    """A column of the tree view: ``kind`` is ``text``, ``number`` (right-aligned) or ``check`` (checkbox)."""

    key: str
    label: str
    kind: str = "text"

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "label": self.label, "kind": self.kind}


DEFAULT_COLUMNS: tuple[Column, ...] = (
    Column("shape", "Shape"),
    Column("dtype", "Dtype"),
    Column("params", "Params", "number"),
    Column("size", "Size", "number"),
)


@dataclass(eq=False)
class Node:
    """One tree node; ``info`` is set for a tensor (leaf), ``children`` for a prefix. A name can be both."""

    id: str
    label: str
    depth: int
    info: Any = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None
    index: int = 0  # creation order: parents before children


# The one size and count rule (``checkpoint.units``): "4.5 KiB", "16.4K".
human_bytes = format_bytes
human_count = format_count


class TreeModel:
    """Tree of dotted names plus the view state; ``rows()`` returns what the tree view shows."""

    def __init__(
        self,
        entries: Iterable[Any],
        *,
        columns: Iterable[Column] = DEFAULT_COLUMNS,
        hidden_groups: Iterable[str] = DEFAULT_HIDDEN_GROUPS,
    ) -> None:
        self.root = Node("", "", -1)
        self.nodes: dict[str, Node] = {}
        self._order: list[Node] = []
        self.leaves: list[Node] = []
        self._sorted = False
        for info in entries:
            self._insert(info)
        for node in self._order:
            if len(node.children) > 1:
                node.children.sort(key=_label_key)
        if len(self.root.children) > 1:
            self.root.children.sort(key=_label_key)
        self._sorted = True
        self.columns: list[Column] = list(columns)
        self.hidden_groups: set[str] = set(hidden_groups)
        self.expanded: set[str] = set()
        self.filter_text = ""
        self.filter_error = ""
        self._match: Callable[[str], bool] | None = None
        self._expanded_before_filter: set[str] | None = None
        self.statuses: dict[str, str] = {}
        self.only_statuses: set[str] | None = None
        self.checks: dict[str, set[str]] = {c.key: set() for c in self.columns if c.kind == "check"}
        self.values: dict[str, dict[str, str]] = {}  # extra text/number columns: column -> {node id: text}
        self.selected = ""

    # ---- building ----
    def _insert(self, info: Any) -> None:
        """Add one entry (its name's levels as nodes); after construction it lands in natural order."""
        parent = self.root
        node_id = ""
        for i, part in enumerate(split_name(info.name)):
            node_id = f"{node_id}.{part}" if i else part
            node = self.nodes.get(node_id)
            if node is None:
                node = Node(node_id, part, i, parent=parent, index=len(self._order))
                self._order.append(node)
                self.nodes[node_id] = node
                if self._sorted:
                    bisect.insort(parent.children, node, key=_label_key)
                else:
                    parent.children.append(node)
            parent = node
        parent.info = info
        self.leaves.append(parent)

    def add_columns(self, columns: Iterable[Column]) -> None:
        """Append columns (e.g. check columns "Reload", "Freeze") after construction."""
        for col in columns:
            self.columns.append(col)
            if col.kind == "check":
                self.checks.setdefault(col.key, set())

    # ---- visibility ----
    def leaf_visible(self, node: Node) -> bool:
        """A leaf is visible when its group is shown, it passes the filter and the status filter."""
        info = node.info
        if getattr(info, "group", "weights") in self.hidden_groups:
            return False
        if self._match is not None and not self._match(node.id):
            return False
        return not (self.only_statuses is not None and self.statuses.get(node.id) not in self.only_statuses)

    def visible_leaves(self, node: Node | None = None) -> list[Node]:
        """Visible leaves under ``node`` (default: all), in file/tree order."""
        out: list[Node] = []
        stack = [node or self.root]
        while stack:
            n = stack.pop()
            if n.info is not None and self.leaf_visible(n):
                out.append(n)
            stack.extend(reversed(n.children))
        return out

    # ---- intents ----
    def set_filter(self, text: str) -> None:
        """Apply filter text; on an invalid regex keep the previous filter and set ``filter_error``."""
        try:
            match = compile_filter(text)
        except ValueError as exc:
            self.filter_error = str(exc)
            return
        self.filter_error = ""
        was_filtering = self._match is not None
        self.filter_text = text
        self._match = match
        if match is None:
            if was_filtering and self._expanded_before_filter is not None:
                self.expanded = self._expanded_before_filter
            self._expanded_before_filter = None
            return
        if not was_filtering:
            self._expanded_before_filter = set(self.expanded)
        expanded: set[str] = set()
        for leaf in self.visible_leaves():
            p = leaf.parent
            while p is not None and p is not self.root and p.id not in expanded:
                expanded.add(p.id)
                p = p.parent
        self.expanded = expanded

    def set_group_visible(self, group: str, visible: bool) -> None:
        (self.hidden_groups.discard if visible else self.hidden_groups.add)(group)

    def set_expanded(self, node_id: str, expanded: bool) -> None:
        if node_id not in self.nodes:
            return
        (self.expanded.add if expanded else self.expanded.discard)(node_id)

    def expand_all(self) -> None:
        self.expanded = {n.id for n in self.nodes.values() if n.children}

    def collapse_all(self) -> None:
        self.expanded.clear()

    def select(self, node_id: str) -> None:
        self.selected = node_id if node_id in self.nodes else ""

    def reveal(self, node_id: str) -> None:
        """Expand every ancestor of ``node_id`` so its row is in ``rows()`` (when its leaves are visible)."""
        node = self.nodes.get(node_id)
        parent = node.parent if node is not None else None
        while parent is not None and parent is not self.root:
            self.expanded.add(parent.id)
            parent = parent.parent

    def set_statuses(self, statuses: Mapping[str, str], only: Iterable[str] | None = None) -> None:
        self.statuses = dict(statuses)
        self.only_statuses = None if only is None else set(only)

    def check_state(self, column: str, node: Node) -> bool | str:
        """True / False for a leaf; True, False or "mixed" over the visible leaves of an inner node."""
        checked = self.checks[column]
        if not node.children:
            return node.id in checked
        leaves = self.visible_leaves(node)
        n = sum(1 for leaf in leaves if leaf.id in checked)
        return False if n == 0 else True if n == len(leaves) else "mixed"

    def toggle_check(self, column: str, node_id: str) -> list[str]:
        """Flip a check on a leaf, or on all visible leaves of an inner node; return the changed leaf ids."""
        if column not in self.checks or node_id not in self.nodes:
            return []
        node = self.nodes[node_id]
        checked = self.checks[column]
        targets = [node.id] if not node.children else [leaf.id for leaf in self.visible_leaves(node)]
        new_value = not all(t in checked for t in targets)
        changed = [t for t in targets if (t in checked) != new_value]
        (checked.update if new_value else checked.difference_update)(changed)
        return changed

    # ---- rows ----
    def _totals(self) -> tuple[list[int], list[int], list[int], dict[str, list[int]]]:
        """Per node index: visible tensors, parameters, bytes, and per check column the checked leaves.

        Leaves add their own numbers, then one reverse pass over the nodes (children were created after their
        parents) adds each node into its parent: O(nodes), no recursion.
        """
        n = len(self._order)
        tensors, params, nbytes = [0] * n, [0] * n, [0] * n
        checked = {c.key: [0] * n for c in self.columns if c.kind == "check"}
        check_sets = [(self.checks[k], arr) for k, arr in checked.items()]
        hidden, match, only, statuses = self.hidden_groups, self._match, self.only_statuses, self.statuses
        for leaf in self.leaves:
            info = leaf.info
            if hidden and getattr(info, "group", "weights") in hidden:
                continue
            if match is not None and not match(leaf.id):
                continue
            if only is not None and statuses.get(leaf.id) not in only:
                continue
            i = leaf.index
            tensors[i] += 1
            params[i] += int(info.numel)
            nbytes[i] += int(info.nbytes)
            for ids, arr in check_sets:
                if leaf.id in ids:
                    arr[i] += 1
        for node in reversed(self._order):
            i = node.index
            if tensors[i] and node.parent is not None and node.parent is not self.root:
                j = node.parent.index
                tensors[j] += tensors[i]
                params[j] += params[i]
                nbytes[j] += nbytes[i]
                for arr in checked.values():
                    arr[j] += arr[i]
        return tensors, params, nbytes, checked

    def rows(self) -> list[dict[str, Any]]:
        """Visible rows: ``{id, depth, label, has_children, expanded, values, status?, checks?}``"""
        tensors, params, nbytes, checked = self._totals()
        rows: list[dict[str, Any]] = []
        expanded, values, statuses = self.expanded, self.values, self.statuses
        stack = [c for c in reversed(self.root.children) if tensors[c.index]]
        while stack:
            node = stack.pop()
            i = node.index
            kids = [c for c in node.children if tensors[c.index]]
            is_open = bool(kids) and node.id in expanded
            info = node.info if not kids else None
            vals = {
                "shape": _shape_text(info.shape) if info is not None else "",
                "dtype": str(info.dtype) if info is not None else "",
                "params": human_count(params[i]),
                "size": human_bytes(nbytes[i]),
                "tensors": tensors[i],
            }
            for key, per_node in values.items():
                if node.id in per_node:
                    vals[key] = per_node[node.id]
            row: dict[str, Any] = {
                "id": node.id,
                "depth": node.depth,
                "label": node.label,
                "has_children": bool(kids),
                "expanded": is_open,
                "values": vals,
            }
            status = statuses.get(node.id)
            if status:
                row["status"] = status
            if checked:
                t = tensors[i]
                row["checks"] = {
                    k: (False if arr[i] == 0 else True if arr[i] == t else "mixed")
                    for k, arr in checked.items()
                }
            rows.append(row)
            if is_open:
                stack.extend(reversed(kids))
        return rows

    def counts(self) -> dict[str, int]:
        """Visible tensors and all tensors (for the filter box's "N of M")."""
        return {
            "visible": sum(1 for leaf in self.leaves if self.leaf_visible(leaf)),
            "total": len(self.leaves),
        }


def _label_key(node: Node) -> tuple:
    return natural_key(node.label)


def _shape_text(shape: Iterable[int]) -> str:
    shape = tuple(shape)
    return "scalar" if not shape else "×".join(str(d) for d in shape)
