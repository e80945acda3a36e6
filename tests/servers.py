"""Starting a Jupyter server as a subprocess for tests: isolated folders, a free port, a random token,
waiting until it answers, and stopping it."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_FOLDERS = {"config": "JUPYTER_CONFIG_DIR", "data": "JUPYTER_DATA_DIR", "runtime": "JUPYTER_RUNTIME_DIR",
            "ipython": "IPYTHONDIR"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, token: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``/api/status`` until the server answers; fail with the log's tail if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Jupyter server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    tail = log.read_text()[-4000:]
    raise RuntimeError(f"Jupyter server did not answer within {timeout_s:g} s:\n{tail}")


def jupyter_env(base: Path, **extra: str) -> dict[str, str]:
    """Environment of an isolated Jupyter: own config, data, runtime and IPython folders under ``base``."""
    env = dict(os.environ)
    for name, variable in _FOLDERS.items():
        folder = base / name
        folder.mkdir(exist_ok=True)
        env[variable] = str(folder)
    env.update(extra)
    return env


@contextmanager
def jupyter_server(
    launcher: Sequence[str], root: Path, env: dict[str, str], log: Path, args: Sequence[str] = (),
    timeout_s: float = 90,
) -> Iterator[tuple[str, str]]:
    """Run ``launcher`` (e.g. ``python -m jupyterlab``) on 127.0.0.1 with a free port and a random token;
    yield ``(url, token)`` once it answers, and stop it afterwards. Its output goes to ``log``."""
    token = secrets.token_hex(16)
    port = free_port()
    command = [
        *launcher, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *args,
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses to run as root otherwise
    with log.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url, token, process, log, timeout_s)
        yield url, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
