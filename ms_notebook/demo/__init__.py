"""Offline demo assets for the tutorials: digits data, DigitsNet and a pretrained checkpoint.

- :class:`DigitsNet` (``ms_notebook.demo.network``): small CNN for 1×8×8 digits, blocks ``block1``,
  ``block2``, ``block3`` and ``head``.
- :func:`datasets`, :func:`dataset`, :func:`arrays`, :func:`num_classes` (``ms_notebook.demo.data``):
  scikit-learn's bundled digits with a fixed split; task ``"pretrain"`` (10 upright digits) and ``"transfer"``
  (digits 5–9 rotated by 90°, 5 classes, 20 labelled images per class).
- :func:`pretrained_checkpoint` (``ms_notebook.demo.pretrained``): path of the cached pretrained ``.ckpt``
  (network + optimizer state), trained in seconds on first use.

Names resolve lazily so that ``import ms_notebook.demo`` does not import MindSpore.
``python -m ms_notebook.demo prepare`` builds the checkpoint and prints its path.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DigitsNet": "ms_notebook.demo.network",
    "arrays": "ms_notebook.demo.data",
    "dataset": "ms_notebook.demo.data",
    "datasets": "ms_notebook.demo.data",
    "num_classes": "ms_notebook.demo.data",
    "pretrained_checkpoint": "ms_notebook.demo.pretrained",
    "cache_dir": "ms_notebook.demo.pretrained",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ms_notebook.demo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
