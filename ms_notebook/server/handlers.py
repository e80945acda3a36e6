"""Thin authenticated handlers: resolve the path through the contents manager, ask the index, answer JSON.

GET /ms-notebook/checkpoint?path=P[&prefix=&depth=1&filter=&groups=&offset=0&limit=1000]   (P: a file, an
    index file or a folder read as a checkpoint set)
    header (format, size, counts, groups), a cut tree and one page of entries (see payload.py)
GET /ms-notebook/tensor?path=P&name=N[&bins=40]
    one entry's statistics, histogram counts and a short preview

Errors: 400 missing argument, 403 path outside the server root (``..``, absolute, symlink out), 404 missing or
hidden file or unknown entry, 422 not a readable checkpoint (the index's message), 501 no file-based contents.
Every message names files relative to the server root, never by their absolute path.

Nothing runs on the event loop but path checks: opening an index, cutting a tree and small tensors go to
a small pool of their own; statistics of big tensors (not yet cached) to a separate bounded pool, so a
summary or a tiny tensor never waits behind them. A client that hangs up stops its statistics between two
chunks (the pass polls ``on_connection_close``'s flag), and queued work for it is dropped unstarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ms_notebook.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from ms_notebook.checkpoint.errors import Cancelled
from ms_notebook.checkpoint.formats.window import OutsideRoot, confined

from .payload import MAX_BINS, checkpoint_summary, tensor_detail

_CACHE_SIZE = 8
BIG_TENSOR_BYTES = 16 << 20  # statistics over this many bytes go to the big pool
SMALL_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ms-notebook-index")
BIG_POOL = ThreadPoolExecutor(max_workers=max(1, min(2, (os.cpu_count() or 2) // 2)),
                              thread_name_prefix="ms-notebook-stats")  # fmt: skip

_cache: OrderedDict[tuple[str, int, int, int, int], Checkpoint] = OrderedDict()
_cache_lock = threading.Lock()
_opening: dict[tuple[str, int, int, int, int], threading.Lock] = {}


def _open_cached(os_path: str) -> Checkpoint:
    """Open (or reuse) the index of a file; a changed size, mtime, ctime or inode opens it afresh. Two
    requests for the same file while it is being indexed wait for one indexing."""
    st = os.stat(os_path)
    key = (os_path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    with _cache_lock:
        ck = _cache.get(key)
        if ck is not None and not ck.is_stale():  # a set's files can change under an unchanged folder
            _cache.move_to_end(key)
            return ck
        lock = _opening.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            ck = _cache.get(key)
        if ck is None or ck.is_stale():  # another request may have opened it afresh meanwhile
            try:
                ck = open_checkpoint(os_path)
            finally:
                with _cache_lock:
                    _opening.pop(key, None)
            with _cache_lock:
                _cache[key] = ck
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
    return ck


def _fail(status: int, message: str) -> tornado.web.HTTPError:
    """An HTTPError whose message survives tornado's %-formatting (names may contain '%')."""
    return tornado.web.HTTPError(status, "%s", message)


def _int_arg(handler: APIHandler, name: str, default: int) -> int:
    raw = handler.get_query_argument(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise _fail(400, f"{name} must be an integer, not {raw!r}") from None


class _CheckpointHandler(APIHandler):
    """Shared path resolution, pools, cancellation and error mapping."""

    _gone: threading.Event
    _root: str = ""

    def initialize(self) -> None:
        self._gone = threading.Event()  # here, not in prepare(): the client may go before that runs

    def on_connection_close(self) -> None:
        """The client hung up: stop work done for it."""
        self._gone.set()
        super().on_connection_close()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message and exc.args:
            self.set_header("Content-Type", "application/json")
            message = exc.log_message % exc.args
            self.finish(json.dumps({"message": message, "reason": exc.reason}))
            return
        super().write_error(status_code, **kwargs)

    def _relative(self, text: str) -> str:
        """``text`` with the server root's absolute path taken out (files named relative to the root)."""
        cm = self.contents_manager
        for root in {os.path.realpath(getattr(cm, "root_dir", "") or "/"), getattr(cm, "root_dir", "")}:
            if root and root != "/":
                text = text.replace(root.rstrip("/") + "/", "")
        return text

    def _message(self, exc: CheckpointError) -> str:
        path = exc.path
        root = os.path.realpath(getattr(self.contents_manager, "root_dir", "") or "/")
        real = os.path.realpath(path) if path else ""
        if real and os.path.commonpath([real, root]) == root:
            shown = os.path.relpath(real, root)
        else:
            shown = os.path.basename(path) or "the file"
        return self._relative(f"{shown}: {exc.problem}")

    _real_root = ""

    async def _resolve(self) -> tuple[str, str]:
        """``(api_path, os_path)`` of the ``path`` argument, or an HTTP error."""
        api_path = self.get_query_argument("path", "")
        if not api_path:
            raise _fail(400, "missing argument: path")
        if api_path.startswith("/") or os.path.isabs(api_path) or "\\" in api_path or "\0" in api_path:
            raise _fail(403, "path must be relative to the server root")
        if ".." in api_path.split("/"):
            raise _fail(403, "path must not leave the server root")
        cm = self.contents_manager
        get_os_path = getattr(cm, "_get_os_path", None)
        root_dir = getattr(cm, "root_dir", None)
        if get_os_path is None or root_dir is None:
            raise _fail(501, "the checkpoint viewer needs a file-based contents manager")
        exists = await ensure_async(cm.file_exists(api_path)) or await ensure_async(cm.dir_exists(api_path))
        if not exists:  # a folder is a checkpoint set (shards, rank_N/ files)
            raise _fail(404, f"no such file: {api_path}")
        if await ensure_async(cm.is_hidden(api_path)) and not getattr(cm, "allow_hidden", False):
            raise _fail(404, f"no such file: {api_path}")
        os_path = get_os_path(api_path)
        real = os.path.realpath(os_path)
        real_root = os.path.realpath(root_dir)
        if os.path.commonpath([real, real_root]) != real_root:
            raise _fail(403, "path resolves outside the server root")
        self._real_root = real_root
        return api_path, real

    def _open_inside(self, os_path: str) -> Checkpoint:
        """The checkpoint at ``os_path`` (run in a pool); every file a set reads must lie inside the root."""
        ck = _open_cached(os_path)
        for file in ck.files:
            real = os.path.realpath(file)
            if os.path.commonpath([real, self._real_root]) != self._real_root:
                raise _fail(403, "a file of this checkpoint set lies outside the server root")
        return ck

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Any:
        """Run index work in ``pool``, off the event loop; map its errors to HTTP answers. Work whose client
        has gone is dropped before it starts."""
        gone = self._gone
        root = self._real_root
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))

        def job() -> Any:
            if gone.is_set():
                raise Cancelled
            with confined(root, allow_hidden):  # every file is checked against the root before it is opened
                return fn(*args)

        try:
            return await asyncio.get_running_loop().run_in_executor(pool, job)
        except OutsideRoot as exc:  # named by its place in the root at most; nothing of it was read
            if "hidden" in exc.problem:
                raise _fail(404, "a file of this checkpoint is hidden") from None
            raise _fail(403, "a file of this checkpoint set lies outside the server root") from None
        except CheckpointError as exc:
            raise _fail(422, self._message(exc)) from None
        except FileNotFoundError:
            raise _fail(404, "the file disappeared") from None
        except (TypeError, ValueError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
            raise _fail(422, self._relative(f"cannot read this value: {exc}")) from None

    def _reply(self, payload: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload, allow_nan=False))


class CheckpointHandler(_CheckpointHandler):
    """Summary, cut tree and a page of entries of one checkpoint."""

    @tornado.web.authenticated
    async def get(self) -> None:
        api_path, os_path = await self._resolve()
        prefix = self.get_query_argument("prefix", "")
        args = dict(
            prefix=prefix,
            depth=_int_arg(self, "depth", 1),
            max_children=_int_arg(self, "max_children", 200),
            filter=self.get_query_argument("filter", ""),
            groups=self.get_query_argument("groups", ""),
            offset=_int_arg(self, "offset", 0),
            limit=_int_arg(self, "limit", 1000),
        )

        def work() -> dict[str, Any]:
            return checkpoint_summary(self._open_inside(os_path), api_path, **args)

        try:
            payload = await self._run(SMALL_POOL, work)
        except Cancelled:
            return
        except KeyError:
            raise _fail(404, f"no entries under {prefix!r}") from None
        self._reply(payload)


class TensorHandler(_CheckpointHandler):
    """Statistics, histogram and preview of one entry."""

    @tornado.web.authenticated
    async def get(self) -> None:
        api_path, os_path = await self._resolve()
        name = self.get_query_argument("name", "")
        if not name:
            raise _fail(400, "missing argument: name")
        bins = max(1, min(_int_arg(self, "bins", 40), MAX_BINS))
        try:
            ck = await self._run(SMALL_POOL, self._open_inside, os_path)
            if name not in ck:
                raise _fail(404, f"{api_path} has no entry named {name!r}")
            info = ck.info(name)
            big = info.kind == "tensor" and info.nbytes > BIG_TENSOR_BYTES and not ck.is_described(name, bins)
            pool = BIG_POOL if big else SMALL_POOL
            payload = await self._run(pool, tensor_detail, ck, name, bins, self._gone.is_set)
        except Cancelled:
            self.log.info("ms_notebook: dropped the statistics of %r in %s: its client went away",
                          name, api_path)  # fmt: skip
            return
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
