"""The Jupyter server extension: checkpoint metadata for the JupyterLab Checkpoint Viewer.

It only reads checkpoint indexes (headers, and one tensor's bytes when asked); it never imports MindSpore.
"""

from __future__ import annotations

from typing import Any

from .handlers import setup_handlers


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the ``/ms-notebook/*`` API handlers on the running server."""
    setup_handlers(server_app.web_app)
    server_app.log.info("ms_notebook: checkpoint API at /ms-notebook/checkpoint and /ms-notebook/tensor")


# The name jupyter_server looked for before 2.0; kept so older servers load us too.
load_jupyter_server_extension = _load_jupyter_server_extension
