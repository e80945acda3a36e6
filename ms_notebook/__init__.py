"""ms-notebook: explore MindSpore checkpoints, plan transfer learning, watch training live in JupyterLab.

The public API is listed in ``__all__``. Names are resolved lazily (PEP 562) so that ``import ms_notebook``
stays cheap and never imports MindSpore: only the parts that build or train networks do, when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # checkpoint index (no MindSpore, no widgets)
    "open_checkpoint": "ms_notebook.checkpoint",
    "Checkpoint": "ms_notebook.checkpoint",
    "CheckpointSet": "ms_notebook.checkpoint",
    "TensorInfo": "ms_notebook.checkpoint",
    "CheckpointError": "ms_notebook.checkpoint",
    "compare": "ms_notebook.checkpoint.compare",
    "CompareReport": "ms_notebook.checkpoint.compare",
    "diff": "ms_notebook.checkpoint.diff",
    "DiffReport": "ms_notebook.checkpoint.diff",
    "open_series": "ms_notebook.checkpoint.series",
    "CheckpointSeries": "ms_notebook.checkpoint.series",
    # MindSpore glue (no widgets)
    "TransferPlan": "ms_notebook.transfer",
    "TransferReport": "ms_notebook.transfer",
    "merge": "ms_notebook.transfer",
    "LiveCurves": "ms_notebook.runs.curves",
    "follow": "ms_notebook.runs.curves",
    "Runner": "ms_notebook.runs.runner",
    "launch": "ms_notebook.runs.launch",
    "DistributedRun": "ms_notebook.runs.launch",
    "available_devices": "ms_notebook.runs.devices",
    # widgets (present and delegate)
    "browse": "ms_notebook.widgets.browser",
    "CheckpointBrowser": "ms_notebook.widgets.browser",
    "TransferPanel": "ms_notebook.widgets.transfer_panel",
    "Dashboard": "ms_notebook.widgets.dashboard",
    "Studio": "ms_notebook.widgets.studio",
}

__all__ = [*_EXPORTS, "demo"]


def _provide_upper_layers() -> None:
    """Name what the runs layer may use from the layers above it (imported there only when first used)."""
    from ms_notebook.runs import hooks

    hooks.provide("curve_view", "ms_notebook.widgets.curve_view:CurveView")
    hooks.provide("transfer_plan", "ms_notebook.transfer.plan:TransferPlan")
    hooks.provide("transfer_error", "ms_notebook.transfer.plan:TransferError")


_provide_upper_layers()


def __getattr__(name: str) -> Any:
    if name == "demo":
        return importlib.import_module("ms_notebook.demo")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ms_notebook' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def _register_display() -> None:
    """Inside an IPython kernel, let the widgets layer register how checkpoints and runs are shown (by type
    name: nothing heavy is imported now). Lower layers keep a text repr and never import the widgets."""
    import sys

    if "IPython" not in sys.modules:
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and getattr(shell, "kernel", None) is not None:
            from ms_notebook.widgets.display import register

            register(shell)
    except Exception:  # never let display set-up break the import
        pass


_register_display()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "ms-notebook"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "ms_notebook.server"}]
