"""The UI message stream response over a real socket (uvicorn, in this process): a reader whose client goes away
stops at once, while the reply goes on being generated and stored."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from chatkeep.api.app import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import free_port


def _request_tasks() -> list[asyncio.Task[Any]]:
    """uvicorn's tasks that run one request each (``RequestResponseCycle.run_asgi``)."""
    return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith("run_asgi")]  # type: ignore[union-attr]


@pytest.fixture
def app(store: ChatStore) -> FastAPI:
    return create_app(Settings(migrate_on_start=False, demo_delay_ms=20), store=store)


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn has no event for it)
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


async def _until(check: Callable[[], object], what: str, seconds: float = 10) -> None:
    """Wait until ``check()`` (awaited if it is a coroutine) is true, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not ((await found) if inspect.isawaitable(found := check()) else found):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_reader_whose_client_went_away_stops_and_the_reply_goes_on(served: str) -> None:
    body = {"id": "t1", "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "count to 60"}]}]}
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", f"{served}/api/chat", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert "content-length" not in response.headers
            received = b""
            async for data in response.aiter_bytes():
                received += data
                if received.count(b'"text-delta"') >= 3:
                    break
        # The connection is closed: its request ends long before the reply (60 chunks at 20 ms) does.
        await _until(lambda: not _request_tasks(), "the request to end after the client went away", seconds=0.8)

        async def stored() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await client.get(f"{served}/api/chat/t1/messages")).json()
            return found

        async def reply_stored() -> bool:
            return len(await stored()) == 2

        await _until(reply_stored, "the reply to be stored")
        reply = (await stored())[1]
        assert reply["parts"][1] == {"type": "text", "text": " ".join(map(str, range(1, 61))), "state": "done"}

        # A resumed reader that goes away stops too, while the next reply streams.
        body = {"id": "t1", "messages": [*await stored(), _user("u2", "count to 60")]}
        async with client.stream("POST", f"{served}/api/chat", json=body) as response:
            async with client.stream("GET", f"{served}/api/chat/t1/stream") as resumed:
                assert resumed.status_code == 200
                async for data in resumed.aiter_bytes():
                    if b'"text-delta"' in data:
                        break
            await _until(lambda: len(_request_tasks()) == 1, "the resumed reader to end", seconds=0.8)
            rest = b"".join([data async for data in response.aiter_bytes()])
        assert rest.endswith(b"data: [DONE]\n\n")


def _user(message_id: str, text: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def _chunks(raw: bytes) -> list[Any]:
    return [orjson.loads(line[6:]) if line != b"data: [DONE]" else "[DONE]" for line in raw.split(b"\n\n") if line]


async def test_a_long_reply_keeps_only_its_unlogged_tail_and_a_late_reader_still_gets_all_of_it(
    app: FastAPI, served: str
) -> None:
    body = {"id": "t1", "messages": [_user("u1", "count to 100")]}
    hub = app.state.chatkeep.chat.hub
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", f"{served}/api/chat", json=body) as response,
    ):
        original = b""
        received = response.aiter_bytes()
        async for data in received:
            original += data
            if original.count(b'"text-delta"') >= 40:  # 0.8 s: several flushes of the chunk log
                break
        (live,) = hub.live.values()
        # What this reader was sent and the log holds is gone from memory.
        assert live.base > 0 and live.first_kept > 0
        assert len(live.data) < len(original) / 2
        async with client.stream("GET", f"{served}/api/chat/t1/stream") as resumed:
            late = b"".join([data async for data in resumed.aiter_bytes()])
        original += b"".join([data async for data in received])
    assert _chunks(late) == _chunks(original)
    assert _chunks(original)[-1] == "[DONE]"
    assert "".join(c["delta"] for c in _chunks(late) if c != "[DONE]" and c["type"] == "text-delta") == " ".join(
        map(str, range(1, 101))
    )


async def test_a_client_that_goes_away_mid_request_is_no_error(
    served: str, store: ChatStore, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = served.removeprefix("http://").split(":")
    body = b'{"id": "t9", "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}'
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST /api/chat HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
    writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body[:20])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    async with httpx.AsyncClient(timeout=30) as client:  # the server goes on serving; nothing was stored
        assert (await client.get(f"{served}/api/threads")).json() == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
