"""Redis is optional at any time: a process starts while it is down, runs as without it meanwhile (readers poll the
database, the request limit is counted per process), says so once in its log and in ``/readyz``, and uses Redis
again by itself once it is back; a Redis that accepts connections but never answers costs a request at most the
configured timeout, once. Each test runs its own throwaway ``redis-server`` (or a socket that never answers) on a
free port: the shared Redis is never touched."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio
import uvicorn
from fastapi import FastAPI

from chatkeep.api import create_app
from chatkeep.protocol.ids import generate_id
from chatkeep.providers.base import ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import free_port

#: How long a step may take at most here, though it takes milliseconds: far above the Redis timeouts the tests
#: configure (0.2 s), and below redis-py's default of 5 s, which is what a request used to wait for a hung Redis.
GENEROUS_S = 4.0


class ThrowawayRedis:
    """A ``redis-server`` of the test's own on ``port``, started and killed at will (nothing saved to disk)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.asyncio.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            await _until(self._answers(client), "the throwaway redis-server to answer")
        finally:
            await client.aclose()

    @staticmethod
    def _answers(client: redis.asyncio.Redis) -> Callable[[], Any]:
        async def check() -> bool:
            try:
                return bool(await client.ping())
            except (redis.RedisError, OSError):
                return False

        return check

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    server = ThrowawayRedis(free_port())
    yield server
    await server.kill()


@pytest.fixture
def pg_database_url(create_pg_database: Callable[[], str]) -> str:
    return create_pg_database()


@contextmanager
def black_hole() -> Iterator[str]:
    """The URL of a "Redis" that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


async def _until(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    """Wait until the awaited ``check()`` is true, for at most ``seconds`` (a deadline, not a measurement)."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def started(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started (its lifespan: recovery, the broker) within :data:`GENEROUS_S`, and a client of it."""
    async with AsyncExitStack() as stack:
        await asyncio.wait_for(stack.enter_async_context(app.router.lifespan_context(app)), GENEROUS_S)
        transport = httpx.ASGITransport(app=app)
        yield await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://t"))


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` behind a real socket (uvicorn, in this process), once its start-up has succeeded."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            raise AssertionError("the application's start-up failed")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def _ready(client: httpx.AsyncClient, base: str = "") -> dict[str, Any]:
    response = await client.get(f"{base}/readyz")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _all_report(status: str, *targets: tuple[httpx.AsyncClient, str]) -> Callable[[], Awaitable[bool]]:
    """A check that every ``(client, base URL)`` reports ``status`` in ``/readyz``."""

    async def check() -> bool:
        return [(await _ready(client, base))["status"] for client, base in targets] == [status] * len(targets)

    return check


async def _statuses(clients: list[httpx.AsyncClient]) -> list[int]:
    """One request per client in turn, each of which must be answered within :data:`GENEROUS_S`."""
    return [(await asyncio.wait_for(c.get("/api/threads"), GENEROUS_S)).status_code for c in clients]


async def _fresh_minute() -> None:
    """Let the request limit's one-minute window have 10 s left at least, so that a test's requests share one."""
    left = 60 - time.time() % 60
    if left < 10:
        await asyncio.sleep(left + 0.1)


def _redis_log(caplog: pytest.LogCaptureFixture, level: int) -> int:
    """How many lines of ``level`` the Redis link logged: warnings say it is gone, infos that it is back."""
    return sum(1 for r in caplog.records if r.name == "chatkeep.redis" and r.levelno == level)


class _HeldModel:
    """Replies ``first``, then waits for :attr:`release` before it replies ``second``."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.model = FunctionModel(self._reply)

    async def _reply(self, request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield "first"
        await self.release.wait()
        yield "second"


async def _chunks_until(lines: AsyncIterator[str], until: Callable[[list[Any]], bool]) -> list[Any]:
    seen: list[Any] = []
    async for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            seen.append("[DONE]" if data == "[DONE]" else json.loads(data))
            if until(seen):
                break
    return seen


def _user(message_id: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": "hi"}]}


def _text(chunks: list[Any]) -> str:
    return "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")


async def _wake_up_across(client: httpx.AsyncClient, producer: str, reader: str, held: _HeldModel, thread: str) -> None:
    """A reply produced by one process, followed from another whose readers never poll on their own: the reader
    sees the reply through to its end only if the producer's news reaches it through Redis."""
    held.release = asyncio.Event()
    body = {"id": thread, "messages": [_user(f"{thread}-u")]}
    async with client.stream("POST", f"{producer}/api/chat", json=body) as produced:
        assert produced.status_code == 200
        produced_lines = produced.aiter_lines()
        await _chunks_until(produced_lines, lambda seen: _text(seen) == "first")
        async with client.stream("GET", f"{reader}/api/chat/{thread}/stream") as followed:
            assert followed.status_code == 200
            lines = followed.aiter_lines()
            await asyncio.wait_for(_chunks_until(lines, lambda seen: _text(seen) == "first"), 2 * GENEROUS_S)
            held.release.set()
            rest = await asyncio.wait_for(_chunks_until(lines, lambda seen: seen[-1] == "[DONE]"), 2 * GENEROUS_S)
        assert _text(rest) == "second"
        assert (await _chunks_until(produced_lines, lambda seen: seen[-1] == "[DONE]"))[-1] == "[DONE]"


async def test_processes_start_without_redis_and_wake_each_other_up_once_it_is_back(
    pg_database_url: str, throwaway_redis: ThrowawayRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes on one PostgreSQL database: both start while Redis is down, and their cross-process wake-ups
    work once it is up, and again after it was killed and restarted (the readers here never poll by themselves,
    so a reply followed from the other process ends only through a wake-up)."""
    caplog.set_level(logging.INFO, logger="chatkeep.redis")
    settings = Settings(
        database_url=pg_database_url, redis_url=throwaway_redis.url, requests_per_minute=0, redis_timeout_s=0.2
    )
    apps, held = [create_app(settings), create_app(settings)], _HeldModel()
    for app in apps:
        service = app.state.chatkeep.chat
        service.model = held.model
        service.hub.poll_interval = 3600.0
    async with served(apps[0]) as one, served(apps[1]) as two, httpx.AsyncClient(timeout=30) as client:
        targets = (client, one), (client, two)
        assert await _ready(client, one) == {"status": "degraded", "redis": "unavailable"}
        await throwaway_redis.start()
        await _until(_all_report("ok", *targets), "both processes to use Redis")
        await _wake_up_across(client, one, two, held, "t1")

        await throwaway_redis.kill()
        await _until(_all_report("degraded", *targets), "both processes to notice that Redis is gone")
        held.release.set()  # a turn while Redis is down works as without Redis
        body = {"id": "t2", "messages": [_user("t2-u")]}
        assert (await client.post(f"{one}/api/chat", json=body)).text.endswith("data: [DONE]\n\n")

        await throwaway_redis.start()
        await _until(_all_report("ok", *targets), "both processes to use Redis again")
        await _wake_up_across(client, two, one, held, "t3")
    # Each of the two processes said once per outage that Redis was gone, and once that it was back.
    assert _redis_log(caplog, logging.WARNING) == 4
    assert _redis_log(caplog, logging.INFO) == 4


async def test_a_redis_that_never_answers_slows_nothing_and_the_limit_still_holds(
    store: ChatStore, caplog: pytest.LogCaptureFixture
) -> None:
    with black_hole() as url:
        settings = Settings(
            migrate_on_start=False,
            redis_url=url,
            redis_timeout_s=0.2,
            redis_connect_timeout_s=0.2,
            requests_per_minute=3,
        )
        app = create_app(settings, store=store)
        await _fresh_minute()
        async with started(app) as client:
            # A request waits for Redis (0.2 s) at most once; none after it does; the limit is per process now.
            chat = {"id": "t1", "messages": [_user("u1")]}
            reply = await asyncio.wait_for(client.post("/api/chat", json=chat), GENEROUS_S)
            assert reply.status_code == 200 and reply.text.endswith("data: [DONE]\n\n")
            assert await _statuses([client] * 3) == [200, 200, 429]
            assert await _ready(client) == {"status": "degraded", "redis": "unavailable"}
    assert _redis_log(caplog, logging.WARNING) == 1


async def test_the_request_limit_holds_while_redis_is_down_and_is_shared_again_once_it_is_back(
    store: ChatStore, throwaway_redis: ThrowawayRedis
) -> None:
    settings = Settings(
        migrate_on_start=False, redis_url=throwaway_redis.url, requests_per_minute=3, local_user_id=generate_id()
    )
    one, two = create_app(settings, store=store), create_app(settings, store=store)
    async with started(one) as a, started(two) as b:
        await _fresh_minute()
        # Redis is down: each process counts its own requests.
        assert await _statuses([a, a, a, a]) == [200, 200, 200, 429]
        assert await _ready(a) == {"status": "degraded", "redis": "unavailable"}

        await throwaway_redis.start()
        await _until(_all_report("ok", (a, ""), (b, "")), "both processes to use Redis again")
        await _fresh_minute()
        # Shared again: the second process is refused the request that is the fourth of the two together.
        assert await _statuses([a, a, b, b]) == [200, 200, 200, 429]
