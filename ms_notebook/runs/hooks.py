"""What the layers above ``runs/`` provide to it, named by the top package and imported only when first used.

The runs layer shows curves and builds default transfer plans, but must not import the widgets or the transfer
layer (imports point down). ``ms_notebook/__init__.py`` names the providers here (``provide``); ``runs/``
asks for them by role (``resolve``), getting ``None`` where nothing was provided.
"""

from __future__ import annotations

import importlib
from typing import Any

_PROVIDED: dict[str, str] = {}


def provide(role: str, target: str) -> None:
    """``target`` ("package.module:attribute") fills ``role`` ("curve_view", "transfer_plan", ...)."""
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ValueError(f"a provider is named 'module:attribute', got {target!r}")
    _PROVIDED[role] = target


def resolve(role: str) -> Any | None:
    """What fills ``role`` (imported now), or ``None`` when nothing was provided."""
    target = _PROVIDED.get(role)
    if target is None:
        return None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
