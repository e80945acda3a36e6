"""Talk to the ms-notebook JupyterLab extension from the kernel: is it there, and "run the cells tagged X".

Contract (comm target ``"ms-notebook"``, registered by the extension on every notebook's kernel):

* ``probe()`` opens the comm with ``{"action": "hello"}``; the extension answers
  ``{"action": "hello", "version": 1, "tags": {"ms-eval": 1, ...}}``. A kernel handles that answer only
  once the current cell (or widget callback) returns, so call ``probe()`` early, e.g. when a widget is
  built; by the time the user clicks a button, ``available()`` is true. Without the extension JupyterLab
  closes the comm and other front ends never answer: ``available()`` stays false and widgets keep doing
  the work themselves.
* ``request_run_tagged(tag)`` sends ``{"action": "run-tagged", "tag": tag}``; the extension runs the
  notebook's code cells tagged ``tag`` in order, as if the user ran them, and answers
  ``{"action": "ran", "tag": tag, "cells": n}`` (recorded in ``last_ran()``). It returns False, sending
  nothing, when no extension answered.

Typical widget use::

    frontend.probe()                        # in __init__
    ...
    if not frontend.request_run_tagged("ms-eval"):
        self._evaluate_here()               # no extension: run in the widget as before
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TARGET = "ms-notebook"


@dataclass
class _State:
    comm: Any = None
    available: bool = False
    version: int = 0
    tags: dict[str, int] = field(default_factory=dict)
    last_ran: dict[str, Any] | None = None


_state = _State()


def _on_msg(msg: dict[str, Any]) -> None:
    data = msg.get("content", {}).get("data") or {}
    action = data.get("action")
    if action == "hello":
        _state.available = True
        _state.version = int(data.get("version", 0))
        _state.tags = {str(k): int(v) for k, v in (data.get("tags") or {}).items()}
    elif action == "ran":
        _state.last_ran = {"tag": data.get("tag"), "cells": int(data.get("cells", 0))}


def _on_close(_msg: dict[str, Any]) -> None:
    _state.comm = None
    _state.available = False


def probe() -> None:
    """Say hello to the front end once per kernel; harmless outside a kernel or without the extension."""
    if _state.comm is not None:
        return
    try:
        from comm import create_comm

        comm = create_comm(target_name=TARGET, data={"action": "hello"})
    except Exception:  # no kernel, or a comm implementation that cannot open: stay unavailable
        return
    comm.on_msg(_on_msg)
    comm.on_close(_on_close)
    _state.comm = comm


def available() -> bool:
    """Whether the ms-notebook JupyterLab extension answered ``probe()``."""
    return _state.available and _state.comm is not None


def tags() -> dict[str, int]:
    """Cells per ``ms-*`` tag in the notebook, as the front end reported when it answered the probe."""
    return dict(_state.tags)


def last_ran() -> dict[str, Any] | None:
    """The front end's last ``{"tag", "cells"}`` report, or None."""
    return _state.last_ran


def request_run_tagged(tag: str) -> bool:
    """Ask the front end to run the cells tagged ``tag``; False (nothing sent) when no extension answered."""
    if not available():
        return False
    _state.comm.send({"action": "run-tagged", "tag": tag})
    return True
