"""``chatkeep serve`` as a real subprocess, for tests that need a real server (real sockets, real crashes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log: IO[str]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


@contextmanager
def running_server(
    database_url: str,
    env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    app_factory: str | None = None,
    args: Sequence[str] = (),
    chatkeep: Sequence[str] = (sys.executable, "-m", "chatkeep"),
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Start ``chatkeep serve`` on a free port and yield it once ``/healthz`` answers; stop it afterwards (if a test
    has not killed it already). ``args`` are more options of ``serve`` (``--model``, ``--host``, …); ``chatkeep``
    is the command that runs chatkeep (e.g. the installed ``chatkeep`` script), in ``cwd``. With ``app_factory``
    (``module:function``), uvicorn serves the app that function makes instead (a library-mode app), with
    ``CHATKEEP_DATABASE_URL`` set to ``database_url``."""
    port = port or free_port()
    cmd = [*chatkeep, "serve", "--port", str(port), "--database-url", database_url, *args]
    if app_factory is not None:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", app_factory, "--host", "127.0.0.1", "--port", str(port)]
    # One test user here stands for many people: the per-user request limit is off unless a test sets it. Stopping
    # the server interrupts the replies a test left running at once, unless a test sets a shutdown grace.
    defaults = {
        "CHATKEEP_REQUESTS_PER_MINUTE": "0",
        "CHATKEEP_SHUTDOWN_GRACE_S": "0",
        "CHATKEEP_DATABASE_URL": database_url,
    }
    proc_env = {**os.environ, **defaults, **(env or {})}
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, env=proc_env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=cwd)
        server = Server(f"http://127.0.0.1:{port}", proc, log)
        try:
            _wait_healthy(server)
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            raise AssertionError(f"chatkeep serve exited early:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("chatkeep serve did not become healthy within 30 s")
        time.sleep(0.1)
