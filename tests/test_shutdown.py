"""SIGTERM on ``chatkeep serve``: replies being generated may finish for ``CHATKEEP_SHUTDOWN_GRACE_S``; then those
left are stopped, stored ``interrupted`` and their streams ended, and the process exits. Real subprocesses."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkeep.store import ChatStore
from chatkeep.store.streams import StreamLog
from tests._server import Server, running_server


@pytest.fixture
def server_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'served.db'}" if backend == "sqlite" else create_pg_database()


def numbers(n: int) -> str:
    return " ".join(str(i) for i in range(1, n + 1))


def turn(thread: str, text: str) -> dict[str, Any]:
    prompt = {"id": f"{thread}-q", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": thread, "messages": [prompt]}


async def chunks(lines: AsyncIterator[str], *, deltas: int | None = None) -> list[dict[str, Any] | str]:
    """The stream's chunks, up to ``deltas`` text deltas (else to its end); ``"[DONE]"`` at the end."""
    seen: list[dict[str, Any] | str] = []
    async for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            seen.append("[DONE]" if data == "[DONE]" else json.loads(data))
            if deltas is not None and sum(isinstance(c, dict) and c["type"] == "text-delta" for c in seen) == deltas:
                break
    return seen


def text_of(seen: list[dict[str, Any] | str]) -> str:
    return "".join(c["delta"] for c in seen if isinstance(c, dict) and c["type"] == "text-delta")


def exits(server: Server, within: float) -> bool:
    """Whether the process exited cleanly (uvicorn ends by the signal it caught, once shut down), waiting for it up
    to ``within`` seconds (an error then: far more than it needs)."""
    server.process.wait(timeout=within)
    return server.process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in server.output()


async def stored_reply(database_url: str, thread: str) -> tuple[dict[str, Any], str | None, list[Any]]:
    """The reply stored in ``thread`` (its content and status) and the thread's active streams."""
    store = ChatStore.from_url(database_url, pool_size=1)
    try:
        _, reply = (await store.list_messages("local", thread)).items
        return reply.content, reply.status, await StreamLog(store.engine).active("local", thread)
    finally:
        await store.close()


async def test_a_reply_longer_than_the_grace_is_stored_interrupted_and_the_server_exits(
    server_database_url: str,
) -> None:
    # 2,000 numbers 50 ms apart: a reply of 100 s, against a grace of 1 s.
    env = {"CHATKEEP_DEMO_DELAY_MS": "50", "CHATKEEP_SHUTDOWN_GRACE_S": "1"}
    with running_server(server_database_url, env=env) as server:
        async with httpx.AsyncClient(timeout=60) as client:
            async with client.stream("POST", f"{server.url}/api/chat", json=turn("t1", "count to 2000")) as response:
                lines = response.aiter_lines()
                seen = await chunks(lines, deltas=5)
                server.process.send_signal(signal.SIGTERM)
                seen += await chunks(lines)
            assert exits(server, within=30)
    # The client got a proper end, after everything that is stored.
    assert seen[-2:] == [{"type": "abort"}, "[DONE]"]
    content, status, active = await stored_reply(server_database_url, "t1")
    assert status == "interrupted" and active == []
    text = content["parts"][-1]
    assert text == {"type": "text", "text": text_of(seen), "state": "done"}
    assert 5 <= len(text["text"].split()) < 2000 and text["text"] == numbers(len(text["text"].split()))


async def test_replies_shorter_than_the_grace_finish_before_the_server_exits(server_database_url: str) -> None:
    """Drained, not cut: one reply whose client reads on, one whose client has gone (the turn goes on without
    it); both end and are stored in full, and the server exits without waiting out the grace."""
    env = {"CHATKEEP_DEMO_DELAY_MS": "50", "CHATKEEP_SHUTDOWN_GRACE_S": "60"}
    with running_server(server_database_url, env=env) as server:
        async with httpx.AsyncClient(timeout=60) as client:
            async with client.stream("POST", f"{server.url}/api/chat", json=turn("gone", "count to 40")) as response:
                await chunks(response.aiter_lines(), deltas=2)
            async with client.stream("POST", f"{server.url}/api/chat", json=turn("read", "count to 30")) as response:
                lines = response.aiter_lines()
                seen = await chunks(lines, deltas=2)
                server.process.send_signal(signal.SIGTERM)
                seen += await chunks(lines)
            assert exits(server, within=45)
    assert seen[-3:] == [{"type": "finish-step"}, {"type": "finish"}, "[DONE]"]
    for thread, count in (("read", 30), ("gone", 40)):
        content, status, active = await stored_reply(server_database_url, thread)
        assert (status, active) == (None, [])
        assert content["parts"][-1] == {"type": "text", "text": numbers(count), "state": "done"}
