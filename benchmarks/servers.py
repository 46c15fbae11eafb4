"""Starting and stopping the servers under test: chatkeep and the floors, each its own process.

Every server is started the same way, ``python -m uvicorn <module>:<factory> --factory`` with the same flags (one
process, uvloop, httptools, no access log), so the only difference between chatkeep and a floor is the
application. chatkeep gets its settings from the environment, like ``chatkeep serve`` (which runs the same
``served_app`` under ``uvicorn.run``, with an access log line per request on top).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped,unused-ignore]

from benchmarks.client import Connection

__all__ = ["ROOT", "ServerProcess", "ServerSpec", "chatkeep_spec", "free_port", "running"]

ROOT = Path(__file__).resolve().parent.parent

UVICORN_FLAGS = (
    "--host", "127.0.0.1",
    "--loop", "uvloop",
    "--http", "httptools",
    "--log-level", "warning",
    "--no-access-log",
    "--timeout-keep-alive", "300",
    "--backlog", "4096",
)  # fmt: skip

#: Environment variables that would change chatkeep's (or a floor's) behaviour if inherited from the caller.
_SCRUBBED_PREFIXES = ("CHATKEEP_", "BENCH_FLOOR_")
_SCRUBBED = frozenset({"DATABASE_URL", "REDIS_URL"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerSpec:
    """What to run: ``app`` is ``module:factory``; ``env`` is added to a scrubbed copy of ours."""

    name: str
    app: str
    env: Mapping[str, str] = field(default_factory=dict)


def chatkeep_spec(database_url: str, user_id: str, **settings: str) -> ServerSpec:
    """chatkeep as a benchmark runs it: one local user, no request rate limit, no cap on concurrent replies per
    user (one benchmark user stands for many people), the schema already migrated. ``settings`` are more
    ``CHATKEEP_*`` variables, e.g. ``DEMO_DELAY_MS="20"``."""
    env = {
        "CHATKEEP_DATABASE_URL": database_url,
        "CHATKEEP_AUTH": "none",
        "CHATKEEP_LOCAL_USER_ID": user_id,
        "CHATKEEP_MODEL": "demo",
        "CHATKEEP_DEMO_DELAY_MS": "0",
        "CHATKEEP_REQUESTS_PER_MINUTE": "0",
        "CHATKEEP_MAX_CONCURRENT_STREAMS": "0",
        "CHATKEEP_MIGRATE_ON_START": "false",
    }
    env.update({f"CHATKEEP_{key.upper()}": value for key, value in settings.items()})
    return ServerSpec("chatkeep", "chatkeep.api.server:served_app", env)


@dataclass
class ServerProcess:
    spec: ServerSpec
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)
    process: psutil.Process = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.process = psutil.Process(self.popen.pid)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (all its threads)."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{self.log_tail()}")


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _start(spec: ServerSpec, logdir: Path, tag: str) -> ServerProcess:
    port = free_port()
    log_path = logdir / f"{tag}-{spec.name}.log"
    log = log_path.open("wb")
    command = [sys.executable, "-m", "uvicorn", spec.app, "--factory", *UVICORN_FLAGS, "--port", str(port)]
    popen = subprocess.Popen(command, cwd=ROOT, env=_environment(spec.env), stdout=log, stderr=subprocess.STDOUT)
    return ServerProcess(spec, port, popen, log_path, log)


async def _wait_healthy(server: ServerProcess, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        server.check_alive()
        try:
            connection = await Connection.open("127.0.0.1", server.port)
            try:
                response = await connection.request("GET", "/healthz", limit_s=5)
            finally:
                connection.close()
            if response.status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not become healthy in {within_s:g} s:\n{server.log_tail()}")
        await asyncio.sleep(0.1)


def _stop(server: ServerProcess) -> None:
    if server.popen.poll() is None:
        server.popen.send_signal(signal.SIGTERM)
        try:
            server.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.popen.kill()
            server.popen.wait()
    server._log.close()


@contextlib.asynccontextmanager
async def running(specs: list[ServerSpec], logdir: Path, tag: str) -> AsyncIterator[list[ServerProcess]]:
    """Start the servers (all at once), wait until each answers ``/healthz``, and stop them afterwards. Their
    output goes to ``<logdir>/<tag>-<name>.log``."""
    servers: list[ServerProcess] = []
    try:
        for spec in specs:
            servers.append(_start(spec, logdir, tag))
        await asyncio.gather(*(_wait_healthy(server) for server in servers))
        yield servers
    finally:
        for server in servers:
            _stop(server)
