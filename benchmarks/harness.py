"""What every scenario shares: the run's context, how the floors are started, and timing helpers."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.client import Connection, Response
from benchmarks.databases import BenchDatabase, DatabaseFactory
from benchmarks.plan import Plan
from benchmarks.profile import Profiler
from benchmarks.servers import ServerProcess, ServerSpec
from benchmarks.stats import Summary, summarize

__all__ = [
    "CheckFailed",
    "Context",
    "connect",
    "expect",
    "floor_spec",
    "ms",
    "sse_floor_spec",
    "timed_pairs",
    "timed_rounds",
]


class CheckFailed(AssertionError):
    """A correctness check failed: the scenario's numbers would be meaningless."""


@dataclass
class Context:
    plan: Plan
    factory: DatabaseFactory
    logdir: Path
    profiler: Profiler
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def floor_spec(database: BenchDatabase, user_id: str) -> ServerSpec:
    """The database floor (:mod:`benchmarks.floors.app`) on the admin connection to ``database``."""
    return ServerSpec(
        "floor",
        "benchmarks.floors.app:create_app",
        {"BENCH_FLOOR_DATABASE_URL": database.admin_url, "BENCH_FLOOR_USER": user_id},
    )


def sse_floor_spec(delay_ms: float) -> ServerSpec:
    """The streaming floor (:mod:`benchmarks.floors.sse`)."""
    return ServerSpec("sse-floor", "benchmarks.floors.sse:create_app", {"BENCH_FLOOR_DELAY_MS": f"{delay_ms:g}"})


async def connect(server: ServerProcess) -> Connection:
    return await Connection.open("127.0.0.1", server.port)


def ms(seconds: Sequence[float]) -> Summary:
    """Summary of durations given in seconds, in milliseconds."""
    return summarize(seconds).scaled(1000)


def expect(response: Response, status: int, what: str) -> Response:
    if response.status != status:
        raise CheckFailed(f"{what}: HTTP {response.status} (expected {status}): {response.body[:300]!r}")
    return response


async def timed_rounds(requests: Sequence[tuple[Connection, str]], iterations: int, warmup: int) -> list[list[float]]:
    """GET each ``(connection, path)`` once per round, starting each round one request further along, so all of
    them see the same machine noise; returns each one's durations in seconds. Every answer must be a 200."""
    times: list[list[float]] = [[] for _ in requests]
    for round_ in range(warmup + iterations):
        for step in range(len(requests)):
            index = (round_ + step) % len(requests)
            connection, path = requests[index]
            response = expect(await connection.request("GET", path), 200, path)
            if round_ >= warmup:
                times[index].append(response.elapsed)
    return times


async def timed_pairs(
    first: Connection, second: Connection, path: str, iterations: int, warmup: int
) -> tuple[list[float], list[float]]:
    """GET ``path`` on two servers in turn (see :func:`timed_rounds`)."""
    mine, theirs = await timed_rounds([(first, path), (second, path)], iterations, warmup)
    return mine, theirs
