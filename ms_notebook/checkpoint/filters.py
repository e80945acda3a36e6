"""The one filter syntax for tensor names, used by every view (notebook browser, transfer panel, Checkpoint
Viewer through the server, ``python -m ms_notebook inspect --filter``).

Rules, tried in this order (all case-insensitive; a filter of only spaces matches everything):

- ``re:PATTERN`` is a regular expression, searched anywhere in the name: ``re:^head``.
- ``/NAME/``, where NAME is made of whole name segments (letters, digits, ``_``, ``-``, joined by ``.`` or
  ``/``), matches names that contain those segments whole: ``/bn/`` finds ``block1.bn.gamma`` but not
  ``bnorm.x``; ``/block1/bn/`` (or ``/block1.bn/``) finds ``block1.bn.*``. It reads like a folder in the
  tree (``python -m ms_notebook inspect`` prints ``bn/``).
- ``/PATTERN/`` with anything else inside is a regular expression, searched: ``/^head\\.(weight|bias)$/``.
- text with ``*``, ``?`` or ``[`` is a glob over the whole name or over a tail that starts after a dot:
  ``*.weight`` finds every weight, ``layers.1*`` finds ``model.layers.12.w``.
- anything else is a substring: ``bias``.

A bad regular expression raises :class:`FilterError` (a ``ValueError``) naming the pattern and the problem.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

FILTER_HINT = "Filter: text, *.weight, /bn/ or /regex/"

_SEGMENTS = re.compile(r"[\w-]+(?:[./][\w-]+)*")
_GLOB_CHARS = "*?["

T = TypeVar("T")


class FilterError(ValueError):
    """The filter text cannot be used (an invalid regular expression)."""


def filter_kind(text: str) -> str:
    """Which rule ``text`` follows: ``""`` (no filter), ``regex``, ``segments``, ``glob`` or ``substring``."""
    text = text.strip()
    if not text:
        return ""
    if text.startswith("re:"):
        return "regex"
    if len(text) > 2 and text.startswith("/") and text.endswith("/"):
        return "segments" if _SEGMENTS.fullmatch(text[1:-1]) else "regex"
    if any(c in text for c in _GLOB_CHARS):
        return "glob"
    return "substring"


def compile_filter(text: str) -> Callable[[str], bool] | None:
    """Filter text -> predicate over full tensor names; None when there is nothing to filter."""
    kind = filter_kind(text)
    text = text.strip()
    if kind == "":
        return None
    if kind == "regex":
        pattern = text[3:] if text.startswith("re:") else text[1:-1]
        try:
            rx = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise FilterError(f"invalid regular expression {pattern!r}: {exc}") from None
        return lambda name: rx.search(name) is not None
    if kind == "segments":
        parts = re.split(r"[./]", text[1:-1])
        rx = re.compile(r"(?:^|\.)" + r"\.".join(map(re.escape, parts)) + r"(?:\.|$)", re.IGNORECASE)
        return lambda name: rx.search(name) is not None
    if kind == "glob":
        rx = re.compile(f"(?:.*\\.)?{fnmatch.translate(text)}", re.IGNORECASE | re.DOTALL)
        return lambda name: rx.match(name) is not None
    low = text.lower()
    return lambda name: low in name.lower()


def select(entries: Iterable[T], text: str, name: Callable[[T], str] | None = None) -> list[T]:
    """The entries whose name matches ``text`` (all of them for an empty filter), in their order.

    ``entries`` are ``TensorInfo``-like objects with a ``name``, or anything with ``name=`` to read it.
    """
    match = compile_filter(text)
    items = list(entries)
    if match is None:
        return items
    get: Callable[[Any], str] = name or (lambda e: e.name)
    return [e for e in items if match(get(e))]
