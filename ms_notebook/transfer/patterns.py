"""Name selection for transfer plans: exact names, cell prefixes, globs and regular expressions.

A pattern is read as:
- ``re:…`` or ``/…/``: a regular expression, searched in each parameter name;
- anything with ``*``, ``?`` or ``[``: a glob over the full name (``block1.*``);
- an exact parameter name (``head.weight``);
- a cell path (``block1`` or ``block2.bn``): every parameter below it. A path of the network's cell hierarchy
  (``layers.2``) also selects the parameters of that cell when their names do not follow it (Swin and RegNet
  in mindcv name every stage's parameters under ``0.``).

A pattern that selects nothing is an error listing the closest names (difflib), so typos never pass silently.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence


class PatternError(ValueError):
    """A selection pattern matched no parameter of the network."""


def _regex(pattern: str) -> re.Pattern[str] | None:
    if pattern.startswith("re:"):
        return re.compile(pattern[3:])
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return re.compile(pattern[1:-1])
    return None


def match_one(
    pattern: str, names: Sequence[str], cells: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Names (in network order) selected by one pattern; empty when it selects nothing.

    ``cells`` maps cell paths to the names of their parameters, for cell paths that names do not follow.
    """
    if not isinstance(pattern, str) or not pattern:
        raise PatternError(f"a selection pattern must be a non-empty string, got {pattern!r}")
    try:
        regex = _regex(pattern)
    except re.error as exc:
        raise PatternError(f"invalid regular expression {pattern!r}: {exc}") from None
    if regex is not None:
        return [n for n in names if regex.search(n)]
    if any(ch in pattern for ch in "*?["):
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    prefix = pattern.rstrip(".") + "."
    hits = [n for n in names if n == pattern or n.startswith(prefix)]
    if not hits and cells and pattern.rstrip(".") in cells:
        below = set(cells[pattern.rstrip(".")])
        hits = [n for n in names if n in below]
    return hits


def cell_paths(names: Iterable[str]) -> list[str]:
    """Every dotted prefix of the parameter names (``block1``, ``block1.bn`` …), in first-seen order."""
    seen: dict[str, None] = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            seen.setdefault(".".join(parts[:i]), None)
    return list(seen)


def select(
    patterns: Iterable[str], names: Sequence[str], cells: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Union of the names ``patterns`` select, in network order; ``PatternError`` for a dead pattern."""
    chosen: set[str] = set()
    for pattern in patterns:
        hits = match_one(pattern, names, cells)
        if not hits:
            candidates = list(dict.fromkeys([*names, *cell_paths(names), *(cells or ())]))
            close = difflib.get_close_matches(
                pattern.strip("/").removeprefix("re:"), candidates, n=5, cutoff=0.5
            )
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise PatternError(f"pattern {pattern!r} matches no parameter of the network{hint}")
        chosen.update(hits)
    return [n for n in names if n in chosen]
