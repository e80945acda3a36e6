"""Real servers for remote-read tests and benchmarks, started on 127.0.0.1: nginx serving a folder (Debian's
package, a generated config), moto's S3-compatible server, and a small HTTP proxy that injects faults
(delay per request, stripped ``Range``, error answers, resets mid-transfer, silence)."""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _wait(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {timeout_s} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def nginx(root: Path, work: Path) -> Iterator[str]:
    """nginx serving ``root`` (``Range``, ``ETag``, ``Last-Modified`` as production servers answer them);
    yields its base URL."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temps = "\n".join(f"    {kind}_temp_path {work}/{kind};" for kind in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    conf = work / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would run as nobody
    conf.write_text(f"""daemon off;
{user}worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temps}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ autoindex on; }}
    }}
}}
""")
    log = work / "stderr.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stdout=out, stderr=out)
    try:
        _wait(
            f"http://127.0.0.1:{port}/", process, work / "error.log" if (work / "error.log").exists() else log
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


@contextmanager
def moto_s3(work: Path) -> Iterator[str]:
    """moto's S3-compatible server as a process; yields its endpoint URL (any credentials work)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=out)  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/", process, log, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def s3_env() -> None:
    """Credentials and region for a local S3 endpoint (moto accepts any)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def s3_options(endpoint: str, **extra: object) -> dict:
    return {"client_kwargs": {"endpoint_url": endpoint}, "key": "testing", "secret": "testing", **extra}


class FaultProxy:
    """An HTTP proxy in front of ``upstream`` (host, port), one request per connection. Settings apply to
    every request (``delay_s``, ``strip_range``, ``widen_range``: ask for all from byte 0) or to the next
    ``faults`` requests (``status``: answer it instead; ``reset_after``: send the headers and that many body
    bytes, then reset; ``silent_s``: answer nothing for that long). ``requests`` counts requests, ``ranges``
    the Range headers seen."""

    def __init__(self, upstream: tuple[str, int], delay_s: float = 0.0) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.strip_range = False
        self.widen_range = False
        self.faults = 0
        self.status: int | None = None
        self.reset_after: int | None = None
        self.silent_s = 0.0
        self.requests = 0
        self.ranges: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _take_fault(self) -> bool:
        with self._lock:
            self.requests += 1
            if self.faults > 0:
                self.faults -= 1
                return True
            return False

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            piece = client.recv(65536)
            if not piece:
                return
            head += piece
        lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        headers = [h for h in lines[1:] if not h.lower().startswith((b"connection:", b"keep-alive:"))]
        for h in headers:
            if h.lower().startswith(b"range:"):
                self.ranges.append(h.split(b":", 1)[1].strip().decode())
        fault = self._take_fault()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.strip_range:
            headers = [h for h in headers if not h.lower().startswith(b"range:")]
        if self.widen_range:  # the server then answers 206 with far more than was asked for
            headers = [b"Range: bytes=0-" if h.lower().startswith(b"range:") else h for h in headers]
        if fault and self.silent_s:
            time.sleep(self.silent_s)
            return
        if fault and self.status is not None:
            client.sendall(f"HTTP/1.1 {self.status} Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                           .encode())  # fmt: skip
            return
        request = b"\r\n".join([lines[0], *headers, b"Connection: close"]) + b"\r\n\r\n"
        with socket.create_connection(self.upstream) as up:
            up.sendall(request)
            limit = self.reset_after if fault else None
            sent, body = b"", 0
            while True:
                data = up.recv(65536)
                if not data:
                    break
                if limit is not None:
                    if b"\r\n\r\n" not in sent:
                        sent += data
                        if b"\r\n\r\n" not in sent:
                            client.sendall(data)
                            continue
                        head_len = sent.index(b"\r\n\r\n") + 4
                        data = sent[head_len:]
                        client.sendall(sent[:head_len])
                    keep = max(0, limit - body)
                    client.sendall(data[:keep])
                    body += min(keep, len(data))
                    if body >= limit:
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return  # closed with a reset
                    continue
                client.sendall(data)
