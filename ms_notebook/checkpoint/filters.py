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

Every pattern is matched by RE2 (``google-re2``), in time linear in the name: no filter can make a view or the
server's pool backtrack for minutes (``/^([\\w.]+)+Q$/`` is as quick as ``bias``). RE2 has no back-references
or look-arounds; such a pattern is a :class:`FilterError`. Filter text is at most :data:`MAX_FILTER_CHARS`
characters, and only the first :data:`MAX_NAME_CHARS` characters of a name are matched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import re2

FILTER_HINT = "Filter: text, *.weight, /bn/ or /regex/"

_SEGMENTS = re.compile(r"[\w-]+(?:[./][\w-]+)*")
_GLOB_CHARS = "*?["

MAX_FILTER_CHARS = 1000
MAX_NAME_CHARS = 1 << 16
_RE2_MEMORY = 8 << 20  # bytes RE2 may spend on one compiled pattern (its default; a huge one is refused)

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


def _re2(pattern: str, shown: str) -> Any:
    """``pattern`` compiled by RE2, case-insensitive; a FilterError naming ``shown`` if RE2 refuses it."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.never_capture = True
    options.max_mem = _RE2_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        problem = exc.args[0] if exc.args else exc
        if isinstance(problem, bytes):
            problem = problem.decode("utf-8", "replace")
        raise FilterError(f"invalid regular expression {shown!r}: {problem}") from None


def _glob_to_re2(text: str) -> str:
    """A shell glob (``*``, ``?``, ``[...]``, ``[!...]``) as an RE2 pattern over the whole string."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + (1 if i < n and text[i] in "!^" else 0)
            j += 1 if j < n and text[j] == "]" else 0
            while j < n and text[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append(r"\[")
                continue
            body = text[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            escaped = "".join("\\" + ch if ch in "\\[]^" else ch for ch in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def compile_filter(text: str) -> Callable[[str], bool] | None:
    """Filter text -> predicate over full tensor names; None when there is nothing to filter.

    Matching takes time linear in the name (RE2); a name is matched on its first MAX_NAME_CHARS characters.
    """
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter is {len(text):,} chars long; at most {MAX_FILTER_CHARS:,} allowed")
    kind = filter_kind(text)
    text = text.strip()
    if kind == "":
        return None
    if kind == "regex":
        pattern = text[3:] if text.startswith("re:") else text[1:-1]
        rx = _re2(pattern, pattern)
    elif kind == "segments":
        parts = re.split(r"[./]", text[1:-1])
        rx = _re2(r"(?:^|\.)" + r"\.".join(map(re.escape, parts)) + r"(?:\.|$)", text)
    elif kind == "glob":
        rx = _re2(f"^(?:.*\\.)?(?s:{_glob_to_re2(text)})$", text)
    else:
        low = text.lower()
        return lambda name: low in name[:MAX_NAME_CHARS].lower()
    return lambda name: rx.search(name[:MAX_NAME_CHARS]) is not None


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
