"""How the lower layers' objects are shown in a notebook, registered with IPython's display formatters.

The checkpoint index (``checkpoint/``) and the run launcher (``runs/``) never import this layer: they keep
a plain text ``repr``. This module tells IPython how the widgets show them instead — a ``Checkpoint`` (and
so a ``CheckpointSet``) as the browser widget, a ``DistributedRun`` as its live view — by type *name*, so
nothing is imported until such an object is displayed. ``import ms_notebook`` calls :func:`register` inside
an IPython kernel; call it yourself after starting IPython later. Importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

# (module, class) -> how it is shown; subclasses (CheckpointSet) are found through the class's MRO
CHECKPOINT = ("ms_notebook.checkpoint.index", "Checkpoint")
DISTRIBUTED_RUN = ("ms_notebook.runs.launch", "DistributedRun")


def checkpoint_bundle(checkpoint: Any) -> dict[str, Any]:
    """A checkpoint as the browser widget, its text summary as plain text (text alone without a kernel)."""
    from ms_notebook.widgets.browser import checkpoint_mimebundle

    return checkpoint_mimebundle(checkpoint)


def show_distributed_run(run: Any) -> None:
    """A distributed run as its live view (chart, log tail per rank, Stop)."""
    from ms_notebook.widgets.distributed_run import display_run

    display_run(run)


def register(shell: Any = None) -> bool:
    """Register the display of ``Checkpoint``/``CheckpointSet`` and ``DistributedRun`` with ``shell``'s
    formatters (the running IPython by default); False when there is no IPython to register with."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    formatters = getattr(shell, "display_formatter", None)
    if formatters is None:
        return False
    formatters.mimebundle_formatter.for_type_by_name(*CHECKPOINT, checkpoint_bundle)
    formatters.ipython_display_formatter.for_type_by_name(*DISTRIBUTED_RUN, show_distributed_run)
    return True
