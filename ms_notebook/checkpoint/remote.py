"""Byte ranges of a remote object (``http(s)://``, ``s3://``, any fsspec scheme): the remote half of the seam
the index reads through.

``reader`` reads a local file with ``os.pread``; a ``RemoteSource`` answers the same positioned reads with
ranged requests, and its ``RemoteStamp`` (size and validator: ETag, else Last-Modified) stands where a local
file's stamp stands, so everything above the reader works on both unchanged.

Every request is bounded: HTTP and S3 reads ask for exactly the bytes wanted with the validator as a
precondition (``If-Match``), so an object replaced while it is read is refused, never mixed; a server that
ignores ``Range`` (200 with the whole body) is stopped before its body is read; 403/404 are named; timeouts,
resets and 5xx answers are retried ``RETRIES`` times with backoff, then named. Errors are CheckpointErrors
naming the URL with credentials removed (user:password and the query string of presigned URLs).
HTTP goes through fsspec's aiohttp session, S3 through s3fs's client (both answer with the response headers
a ranged read needs: size and validator come with the first range, no extra request); any other fsspec
filesystem through ``info`` (size and validator) and ``cat_file`` per range, ranges run concurrently.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import CheckpointError

FIRST_READ = (
    100 << 10
)  # the first request: a safetensors header (as huggingface_hub reads it) or a .ckpt start
MAX_REQUEST = 32 << 20  # a value is read in ranges of at most this many bytes
CONCURRENCY = 32  # ranged requests in flight at once
RETRIES = 3  # extra tries after a transient failure (timeout, reset, 5xx, 429)
BACKOFF_S = 0.2  # first wait before a retry; doubled each time
TIMEOUT_S = 30.0  # connect and between-bytes timeout of one request
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def is_url(path: object) -> bool:
    """Whether ``path`` names a remote object (``scheme://...``, not ``file://``)."""
    if not isinstance(path, str):
        return False
    m = _URL.match(path)
    return m is not None and m.group(1).lower() != "file"


def redact(url: str) -> str:
    """``url`` without what may be a credential: user and password, and the query (presigned URLs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


class Cost:
    """What reading cost so far: requests (tries included), round trips (requests sent together count once),
    bytes received and seconds spent waiting (summed over concurrent requests)."""

    def __init__(self) -> None:
        self.rounds = 0
        self.requests = 0
        self.bytes = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def add(self, requests: int = 0, nbytes: int = 0, seconds: float = 0.0, rounds: int = 0) -> None:
        with self._lock:
            self.rounds += rounds
            self.requests += requests
            self.bytes += nbytes
            self.seconds += seconds

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                "requests": self.requests,
                "round_trips": self.rounds,
                "bytes": self.bytes,
                "seconds": round(self.seconds, 4),
            }


@dataclass(frozen=True, slots=True)
class Meta:
    """What a response says about the object: its size and validator (``None``: the server gives none)."""

    size: int
    validator: str | None


class _Transient(Exception):
    """A failure worth another try (timeout, reset, 5xx, 429); the message says what happened."""


class _Fatal(Exception):
    """A failure another try would repeat (403, 404, Range ignored, object replaced)."""


class Transport:
    """Ranged reads of the objects of one store; ``fetch`` is one request (retried), ``fetch_many`` runs
    requests concurrently on fsspec's event loop."""

    def __init__(self, options: dict[str, Any]) -> None:
        options = dict(options)
        self.timeout = float(options.pop("timeout", TIMEOUT_S))
        self.retries = int(options.pop("retries", RETRIES))
        self.options = options
        self.loop: Any = None

    # one request, no retry: subclasses
    async def _get(self, url: str, start: int, end: int, validator: str | None) -> tuple[bytes, Meta]:
        raise NotImplementedError

    async def _head(self, url: str) -> Meta:
        raise NotImplementedError

    async def _retrying(self, what: str, call: Any, cost: Cost) -> Any:
        delay = BACKOFF_S
        for attempt in range(self.retries + 1):
            t0 = time.perf_counter()
            try:
                result = await call()
            except _Transient as exc:
                cost.add(1, 0, time.perf_counter() - t0)
                if attempt == self.retries:
                    tries = self.retries + 1
                    raise _Fatal(f"{exc} while {what} (gave up after {tries} tries)") from None
                await asyncio.sleep(delay * (0.75 + 0.5 * random.random()))
                delay *= 2
                continue
            except _Fatal:
                cost.add(1, 0, time.perf_counter() - t0)
                raise
            got = len(result[0]) if isinstance(result, tuple) else 0
            cost.add(1, got, time.perf_counter() - t0)
            return result
        raise AssertionError("unreachable")

    def _sync(self, coro_fn: Any, *args: Any, cost: Cost | None = None) -> Any:
        import fsspec.asyn

        if cost is not None:
            cost.add(rounds=1)
        return fsspec.asyn.sync(self.loop, coro_fn, *args)

    async def _fetch(self, url: str, start: int, end: int, validator: str | None, cost: Cost) -> Any:
        return await self._retrying(
            f"reading bytes {start}..{end}", lambda: self._get(url, start, end, validator), cost
        )

    def fetch(self, url: str, start: int, end: int, validator: str | None, cost: Cost) -> tuple[bytes, Meta]:
        """Bytes ``[start, end)`` of ``url`` (fewer only at its end) and what the response says of it."""
        return self._sync(self._fetch, url, start, end, validator, cost, cost=cost)

    def fetch_many(
        self,
        requests: Sequence[tuple[str, int, int, str | None]],
        cost: Cost,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """``fetch`` for each ``(url, start, end, validator)``, at most ``CONCURRENCY`` at once
        (``return_exceptions``: a failed one's error in its place)."""

        async def run() -> list[tuple[bytes, Meta]]:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(url: str, start: int, end: int, validator: str | None) -> tuple[bytes, Meta]:
                async with gate:
                    return await self._fetch(url, start, end, validator, cost)

            return list(
                await asyncio.gather(*(one(*r) for r in requests), return_exceptions=return_exceptions)
            )

        return self._sync(run, cost=cost)

    def head(self, url: str, cost: Cost) -> Meta:
        """Size and validator of ``url`` (one metadata request, retried)."""

        async def run() -> Meta:
            return await self._retrying("asking for its size", lambda: self._head(url), cost)

        return self._sync(run, cost=cost)


def _range_total(content_range: str | None) -> tuple[int, int, int] | None:
    """``(first, last, total)`` of a ``Content-Range: bytes a-b/n`` header."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+)\s*", content_range or "")
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _validator(etag: str | None, last_modified: str | None) -> str | None:
    if etag:
        return "etag:" + etag
    if last_modified:
        return "last-modified:" + last_modified
    return None


def _status_problem(status: int) -> Exception:
    if status in (401, 403):
        return _Fatal(
            f"access denied (HTTP {status}): check the credentials in storage_options or the environment"
        )
    if status in (404, 410):
        return _Fatal(f"not found (HTTP {status})")
    if status == 412:
        return _Fatal("the object was replaced while it was read (its validator changed); open it again")
    if status == 416:
        return _Fatal("the range asked for lies past the end of the object (it shrank or was replaced?)")
    if status in (408, 429) or status >= 500:
        return _Transient(f"the server answered HTTP {status}")
    return _Fatal(f"unexpected answer HTTP {status}")


class HttpTransport(Transport):
    """``http(s)://`` through the aiohttp session of fsspec's HTTP filesystem (its ``client_kwargs`` and
    request options, e.g. ``headers``, come from ``storage_options``)."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        import fsspec

        self.fs = fsspec.filesystem("http", **self.options)
        self.loop = self.fs.loop

    def _request_kwargs(self, headers: dict[str, str]) -> dict[str, Any]:
        import aiohttp

        kwargs = {k: v for k, v in self.fs.kwargs.items() if k != "headers"}
        kwargs["headers"] = {**(self.fs.kwargs.get("headers") or {}), **headers}
        kwargs["timeout"] = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        return kwargs

    async def _get(self, url: str, start: int, end: int, validator: str | None) -> tuple[bytes, Meta]:
        import aiohttp

        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        if validator and validator.startswith("etag:"):
            if not validator.startswith("etag:W/"):  # a weak ETag never matches If-Match: compared below
                headers["If-Match"] = validator[5:]
        elif validator and validator.startswith("last-modified:"):
            headers["If-Unmodified-Since"] = validator[14:]
        session = await self.fs.set_session()
        try:
            async with session.get(url, **self._request_kwargs(headers)) as r:
                meta_validator = _validator(r.headers.get("ETag"), r.headers.get("Last-Modified"))
                if r.status == 206:
                    span = _range_total(r.headers.get("Content-Range"))
                    if span is None or span[0] != start or span[1] >= end:  # never more than asked for
                        raise _Fatal(f"the server answered bytes {r.headers.get('Content-Range')!r} to a "
                                     f"request for bytes {start}..{end}")  # fmt: skip
                    size = span[2]
                    want = span[1] - span[0] + 1
                elif r.status == 200:
                    length = r.content_length
                    if length is None or start != 0 or length > end - start:
                        shown = "an unknown number of" if length is None else f"{length:,}"
                        raise _Fatal(
                            f"the server ignores Range requests: it answered 200 with the whole object "
                            f"({shown} bytes) to a request for bytes {start}..{end}; stopped rather than "
                            "download it"
                        )
                    size = want = length  # the whole object is no more than was asked for
                else:
                    raise _status_problem(r.status)
                if validator is not None and meta_validator is not None and meta_validator != validator:
                    raise _Fatal(
                        "the object was replaced while it was read (its validator changed); open it again"
                    )
                data = await _read_exactly(r, want)
                if len(data) < want:
                    raise _Transient(f"the connection closed after {len(data):,} of {want:,} bytes")
                return bytes(data[:want]), Meta(size, meta_validator)
        except (_Fatal, _Transient):
            raise
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            raise _Transient(f"the connection was reset ({type(exc).__name__})") from None
        except TimeoutError:
            raise _Transient(f"no answer within {self.timeout:g} s (timeout)") from None
        except aiohttp.ClientError as exc:
            raise _Transient(f"the request failed ({type(exc).__name__}: {exc})") from None

    async def _head(self, url: str) -> Meta:
        import aiohttp

        session = await self.fs.set_session()
        try:
            async with session.head(url, allow_redirects=True, **self._request_kwargs({})) as r:
                if r.status != 200:
                    raise _status_problem(r.status)
                if r.content_length is None:
                    raise _Fatal("the server does not say the object's size")
                return Meta(
                    r.content_length, _validator(r.headers.get("ETag"), r.headers.get("Last-Modified"))
                )
        except (_Fatal, _Transient):
            raise
        except TimeoutError:
            raise _Transient(f"no answer within {self.timeout:g} s (timeout)") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise _Transient(f"the request failed ({type(exc).__name__})") from None


async def _read_exactly(r: Any, want: int) -> bytearray:
    """Up to ``want`` bytes of a response body, read in pieces."""
    out = bytearray()
    while len(out) < want:
        piece = await r.content.read(min(1 << 20, want - len(out)))
        if not piece:
            break
        out += piece
    return out


class S3Transport(Transport):
    """``s3://`` through s3fs's client: ``get_object`` with ``Range`` and ``IfMatch`` answers with the size
    (``ContentRange``) and ETag, so the first range needs no extra request."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        try:
            import s3fs
        except ImportError:
            raise _Fatal("reading s3:// needs the s3fs package (pip install s3fs)") from None
        config = dict(self.options.pop("config_kwargs", None) or {})
        config.setdefault("connect_timeout", self.timeout)
        config.setdefault("read_timeout", self.timeout)
        config.setdefault("retries", {"max_attempts": 1})  # retried here, with our bound and backoff
        self.fs = s3fs.S3FileSystem(config_kwargs=config, skip_instance_cache=True, **self.options)
        self.fs.retries = 1  # s3fs's own loop: one try (retried here)
        self.loop = self.fs.loop

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await self.fs._call_s3(method, **kwargs)
        except FileNotFoundError:
            raise _Fatal("not found (no such bucket or key)") from None
        except PermissionError:
            raise _Fatal(
                "access denied: check the credentials in storage_options or the environment"
            ) from None
        except TimeoutError:
            raise _Transient(f"no answer within {self.timeout:g} s (timeout)") from None
        except OSError as exc:
            text = str(exc)
            if any(k in text.lower() for k in ("preconditionfailed", "pre-condition", "precondition", "412")):
                raise _Fatal(
                    "the object was replaced while it was read (its ETag changed); open it again"
                ) from None
            if any(k in text.lower() for k in ("invalidrange", "not satisfiable", "416")):
                raise _status_problem(416) from None
            raise _Transient(f"the request failed ({text[:200]})") from None
        except Exception as exc:  # botocore's connection errors are not OSErrors
            raise _Transient(f"the request failed ({type(exc).__name__})") from None

    async def _get(self, url: str, start: int, end: int, validator: str | None) -> tuple[bytes, Meta]:
        bucket, key, _ = self.fs.split_path(url)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
        if validator and validator.startswith("etag:"):
            kwargs["IfMatch"] = validator[5:]
        resp = await self._call("get_object", **kwargs)
        span = _range_total(resp.get("ContentRange"))
        body = resp["Body"]
        if span is None:  # the whole object: read it only when it is no more than was asked for
            size = want = int(resp.get("ContentLength", -1))
            if size < 0 or start != 0 or size > end - start:
                await body.aclose()
                shown = "an unknown number of" if size < 0 else f"{size:,}"
                raise _Fatal(
                    f"the store ignores Range requests: it answered with the whole object ({shown} bytes) to "
                    f"a request for bytes {start}..{end}; stopped rather than download it"
                )
        elif span[0] != start or span[1] >= end:  # never more than asked for
            await body.aclose()
            raise _Fatal(
                f"the store answered bytes {resp.get('ContentRange')!r} to a request for bytes {start}..{end}"
            )
        else:
            size, want = span[2], span[1] - span[0] + 1
        try:
            async with body:
                data = await body.read()
        except Exception as exc:
            raise _Transient(f"the connection was reset ({type(exc).__name__})") from None
        if len(data) < want:
            raise _Transient(f"the connection closed after {len(data):,} of {want:,} bytes")
        meta = Meta(size, _validator(resp.get("ETag"), str(resp.get("LastModified") or "") or None))
        if validator is not None and meta.validator != validator:
            raise _Fatal("the object was replaced while it was read (its ETag changed); open it again")
        return bytes(data[:want]), meta

    async def _head(self, url: str) -> Meta:
        bucket, key, _ = self.fs.split_path(url)
        resp = await self._call("head_object", Bucket=bucket, Key=key)
        return Meta(
            int(resp["ContentLength"]), _validator(resp.get("ETag"), str(resp.get("LastModified") or ""))
        )


class FsspecTransport(Transport):
    """Any other fsspec filesystem: ``info`` for the size and validator, ``cat_file`` for a range (two
    requests for the first range; the validator is checked again by ``RemoteSource.check_unchanged``)."""

    def __init__(self, protocol: str, options: dict[str, Any]) -> None:
        super().__init__(options)
        import fsspec
        import fsspec.asyn

        try:
            self.fs = fsspec.filesystem(protocol, **self.options)
        except (ImportError, ValueError) as exc:
            raise _Fatal(f"no filesystem for {protocol}:// ({exc})") from None
        self.loop = fsspec.asyn.get_loop()
        self.sizes: dict[str, Meta] = {}

    async def _head(self, url: str) -> Meta:
        try:
            info = await asyncio.to_thread(self.fs.info, url)
        except FileNotFoundError:
            raise _Fatal("not found") from None
        except PermissionError:
            raise _Fatal("access denied") from None
        except OSError as exc:
            raise _Transient(f"the request failed ({exc})") from None
        keys = ("ETag", "etag", "md5", "LastModified", "last_modified", "mtime", "updated")
        found = next((f"{k}:{info[k]}" for k in keys if info.get(k)), None)
        return Meta(int(info["size"]), found)

    async def _get(self, url: str, start: int, end: int, validator: str | None) -> tuple[bytes, Meta]:
        meta = self.sizes.get(url)
        if meta is None:
            meta = self.sizes[url] = await self._head(url)
        try:
            data = await asyncio.to_thread(self.fs.cat_file, url, start, min(end, meta.size))
        except FileNotFoundError:
            raise _Fatal("not found") from None
        except OSError as exc:
            raise _Transient(f"the request failed ({exc})") from None
        return bytes(data), meta


def transport_for(url: str, storage_options: dict[str, Any] | None) -> Transport:
    """The transport for ``url``'s scheme; CheckpointError when none can be made."""
    scheme = url.split("://", 1)[0].lower()
    try:
        if scheme in ("http", "https"):
            return HttpTransport(storage_options or {})
        if scheme in ("s3", "s3a"):
            return S3Transport(storage_options or {})
        return FsspecTransport(scheme, storage_options or {})
    except _Fatal as exc:
        raise CheckpointError(redact(url), str(exc)) from None


class RemoteStamp(tuple):
    """``(size, validator)`` of a remote object as it was indexed; ``source`` reads it. Stands where a local
    file's stamp stands (``reader`` reads through ``source``; ``stamp[0]`` is the size)."""

    source: RemoteSource

    def __new__(cls, source: RemoteSource) -> RemoteStamp:
        self = super().__new__(cls, (source.size, source.validator))
        self.source = source
        return self


class RemoteSource:
    """One remote object: its URL, size and validator (learnt from the first response) and positioned reads
    of it. ``display`` is the URL without credentials: the name in every error."""

    def __init__(self, url: str, transport: Transport, cost: Cost) -> None:
        self.url = url
        self.display = redact(url)
        self.transport = transport
        self.cost = cost
        self.size = -1
        self.validator: str | None = None

    def _error(self, exc: Exception) -> CheckpointError:
        return CheckpointError(self.display, str(exc))

    def learn(self, meta: Meta) -> None:
        self.size, self.validator = meta.size, meta.validator

    def first(self, n: int = FIRST_READ) -> bytes:
        """The first ``n`` bytes (fewer for a smaller object); learns the size and validator."""
        try:
            data, meta = self.transport.fetch(self.url, 0, n, None, self.cost)
        except _Fatal as exc:
            raise self._error(exc) from None
        self.learn(meta)
        return data

    @property
    def stamp(self) -> RemoteStamp:
        return RemoteStamp(self)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, checked against the validator; CheckpointError if the object ends first."""
        end = min(end, self.size)
        if end <= start:
            return b""
        try:
            data, meta = self.transport.fetch(self.url, start, end, self.validator, self.cost)
        except _Fatal as exc:
            raise self._error(exc) from None
        self._same(meta)
        if len(data) != end - start:
            raise CheckpointError(
                self.display, f"the object ended while reading bytes {start}..{end} (truncated?)"
            )
        return data

    def read_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Bytes of each ``[start, end)``, requested concurrently."""
        clipped = [(s, min(e, self.size)) for s, e in ranges]
        try:
            answers = self.transport.fetch_many(
                [(self.url, s, e, self.validator) for s, e in clipped if e > s], self.cost
            )
        except _Fatal as exc:
            raise self._error(exc) from None
        out = []
        it = iter(answers)
        for s, e in clipped:
            if e <= s:
                out.append(b"")
                continue
            data, meta = next(it)
            self._same(meta)
            out.append(data)
        return out

    def _same(self, meta: Meta) -> None:
        if meta.size != self.size or (self.validator is not None and meta.validator != self.validator):
            raise CheckpointError(
                self.display,
                "the object was replaced while it was read (its validator changed); open it again",
            )

    def pread_into(self, view: memoryview, offset: int) -> None:
        """Fill ``view`` from byte ``offset`` (the reader's positioned read), in ranges of ``MAX_REQUEST``."""
        pos = 0
        while pos < len(view):
            take = min(MAX_REQUEST, len(view) - pos)
            if offset + pos + take > self.size:
                at = offset + pos
                raise CheckpointError(
                    self.display, f"file ended while reading bytes {at}..{offset + len(view)} (truncated?)"
                )
            view[pos : pos + take] = self.read(offset + pos, offset + pos + take)
            pos += take

    def check_unchanged(self) -> None:
        """CheckpointError when the object now differs from when it was indexed (one metadata request)."""
        try:
            meta = self.transport.head(self.url, self.cost)
        except _Fatal as exc:
            raise self._error(exc) from None
        self._same(meta)

    def check_unchanged_size(self) -> None:
        """Learn the size and validator by a metadata request (for an object too small to read a range of)."""
        try:
            self.learn(self.transport.head(self.url, self.cost))
        except _Fatal as exc:
            raise self._error(exc) from None

    def cache_key(self) -> str | None:
        """What names this object's saved index: URL, store options and validator (None: no validator)."""
        if self.validator is None:
            return None
        where = (
            self.transport.options.get("client_kwargs", {}) if isinstance(self.transport, S3Transport) else {}
        )
        endpoint = (where or {}).get("endpoint_url", "")
        return f"remote|{self.display}|{endpoint}|{self.size}|{self.validator}"
