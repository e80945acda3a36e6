"""Thin authenticated handlers: resolve the path through the contents manager, ask the index, answer JSON.

GET /ms-notebook/checkpoint?path=P[&prefix=&depth=1&filter=&offset=0&limit=1000]
    header (format, size, counts, groups), a cut tree and one page of entries (see payload.py)
GET /ms-notebook/tensor?path=P&name=N[&bins=40]
    one entry's statistics, histogram counts and a short preview

Errors: 400 missing argument, 403 path outside the server root (``..``, absolute, symlink out), 404 missing or
hidden file or unknown entry, 422 not a readable checkpoint (the index's message), 501 no file-based contents.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from threading import Lock
from typing import Any

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ms_notebook.checkpoint import Checkpoint, CheckpointError, open_checkpoint

from .payload import checkpoint_summary, tensor_detail

_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, int, int], Checkpoint] = OrderedDict()
_cache_lock = Lock()


def _open_cached(os_path: str) -> Checkpoint:
    """Open (or reuse) the index of a file; a changed size or mtime opens it afresh."""
    st = os.stat(os_path)
    key = (os_path, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        ck = _cache.get(key)
        if ck is not None:
            _cache.move_to_end(key)
            return ck
    ck = open_checkpoint(os_path)
    with _cache_lock:
        _cache[key] = ck
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ck


def _int_arg(handler: APIHandler, name: str, default: int) -> int:
    raw = handler.get_query_argument(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise tornado.web.HTTPError(400, f"{name} must be an integer, not {raw!r}") from None


class _CheckpointHandler(APIHandler):
    """Shared path resolution and error mapping."""

    async def _resolve(self) -> tuple[str, str]:
        """``(api_path, os_path)`` of the ``path`` argument, or an HTTP error."""
        api_path = self.get_query_argument("path", "")
        if not api_path:
            raise tornado.web.HTTPError(400, "missing argument: path")
        if api_path.startswith("/") or os.path.isabs(api_path) or "\\" in api_path or "\0" in api_path:
            raise tornado.web.HTTPError(403, "path must be relative to the server root")
        if ".." in api_path.split("/"):
            raise tornado.web.HTTPError(403, "path must not leave the server root")
        cm = self.contents_manager
        get_os_path = getattr(cm, "_get_os_path", None)
        root_dir = getattr(cm, "root_dir", None)
        if get_os_path is None or root_dir is None:
            raise tornado.web.HTTPError(501, "the checkpoint viewer needs a file-based contents manager")
        if not await ensure_async(cm.file_exists(api_path)):
            raise tornado.web.HTTPError(404, f"no such file: {api_path}")
        if await ensure_async(cm.is_hidden(api_path)) and not getattr(cm, "allow_hidden", False):
            raise tornado.web.HTTPError(404, f"no such file: {api_path}")
        os_path = get_os_path(api_path)
        real = os.path.realpath(os_path)
        real_root = os.path.realpath(root_dir)
        if os.path.commonpath([real, real_root]) != real_root:
            raise tornado.web.HTTPError(403, "path resolves outside the server root")
        return api_path, real

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run index work off the event loop; map its errors to HTTP answers."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, lambda: fn(*args, **kwargs))
        except CheckpointError as exc:
            raise tornado.web.HTTPError(422, str(exc)) from None
        except FileNotFoundError:
            raise tornado.web.HTTPError(404, "the file disappeared") from None

    def _reply(self, payload: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload, allow_nan=False))


class CheckpointHandler(_CheckpointHandler):
    """Summary, cut tree and a page of entries of one checkpoint."""

    @tornado.web.authenticated
    async def get(self) -> None:
        api_path, os_path = await self._resolve()
        ck = await self._run(_open_cached, os_path)
        prefix = self.get_query_argument("prefix", "")
        try:
            payload = checkpoint_summary(
                ck,
                api_path,
                prefix=prefix,
                depth=_int_arg(self, "depth", 1),
                max_children=_int_arg(self, "max_children", 200),
                filter=self.get_query_argument("filter", ""),
                offset=_int_arg(self, "offset", 0),
                limit=_int_arg(self, "limit", 1000),
            )
        except KeyError:
            raise tornado.web.HTTPError(404, f"no entries under {prefix!r}") from None
        self._reply(payload)


class TensorHandler(_CheckpointHandler):
    """Statistics, histogram and preview of one entry."""

    @tornado.web.authenticated
    async def get(self) -> None:
        api_path, os_path = await self._resolve()
        name = self.get_query_argument("name", "")
        if not name:
            raise tornado.web.HTTPError(400, "missing argument: name")
        ck = await self._run(_open_cached, os_path)
        if name not in ck:
            raise tornado.web.HTTPError(404, f"{api_path} has no entry named {name!r}")
        bins = _int_arg(self, "bins", 40)
        payload = await self._run(tensor_detail, ck, name, bins)
        payload["path"] = api_path
        self._reply(payload)


def setup_handlers(web_app: Any) -> None:
    """Add the handlers under the server's base URL."""
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "ms-notebook", "checkpoint"), CheckpointHandler),
            (url_path_join(base, "ms-notebook", "tensor"), TensorHandler),
        ],
    )
