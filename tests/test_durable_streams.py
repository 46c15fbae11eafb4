"""A reply is never lost: not when the client goes away, not when the server is killed, not on reload; and it
stops when asked. Real ``chatkeep serve`` processes, real sockets, real ``kill -9``, real Redis.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests._server import running_server

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def server_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'served.db'}" if backend == "sqlite" else create_pg_database()


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def numbers(n: int) -> str:
    return " ".join(str(i) for i in range(1, n + 1))


_LINES: dict[int, AsyncIterator[str]] = {}


async def chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any] | str]:
    """The chunks of an SSE response, from where the previous read of it stopped; ``"[DONE]"`` at the end."""
    lines = _LINES.setdefault(id(response), response.aiter_lines())
    async for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            yield "[DONE]" if data == "[DONE]" else json.loads(data)


def text_of(collected: list[dict[str, Any] | str]) -> str:
    return "".join(c["delta"] for c in collected if isinstance(c, dict) and c["type"] == "text-delta")


async def read_until(response: httpx.Response, deltas: int) -> list[dict[str, Any] | str]:
    seen: list[dict[str, Any] | str] = []
    async for chunk in chunks(response):
        seen.append(chunk)
        if sum(1 for c in seen if isinstance(c, dict) and c["type"] == "text-delta") >= deltas:
            break
    return seen


async def wait_for(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def rows(client: httpx.AsyncClient, base: str, thread: str) -> list[dict[str, Any]]:
    response = await client.get(f"{base}/api/threads/{thread}/messages")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def test_a_reply_is_stored_in_full_when_the_client_disconnects(server_database_url: str) -> None:
    with running_server(server_database_url, env={"CHATKEEP_DEMO_DELAY_MS": "10"}) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"id": "t1", "messages": [user("count to 100")]}
            async with client.stream("POST", f"{server.url}/api/chat", json=body) as response:
                seen = await read_until(response, 3)
            assert text_of(seen) == "1 2 3"

            async def finished() -> list[dict[str, Any]] | None:
                found = await rows(client, server.url, "t1")
                return found if len(found) == 2 else None

            stored = await wait_for(finished, "the reply to be stored")
            assert stored[1]["status"] == "complete"
            assert stored[1]["content"]["parts"][1] == {"type": "text", "text": numbers(100), "state": "done"}


async def test_resume_replays_from_start_and_follows_to_the_end(server_database_url: str) -> None:
    with running_server(server_database_url, env={"CHATKEEP_DEMO_DELAY_MS": "10"}) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(f"{server.url}/api/chat/never-used/stream")).status_code == 204
            body = {"id": "t1", "messages": [user("count to 200")]}
            async with client.stream("POST", f"{server.url}/api/chat", json=body) as response:
                first = await read_until(response, 5)
            start = first[0]
            assert isinstance(start, dict) and start["type"] == "start"
            # While it streams, the history leaves the reply out: a reloaded client gets it by resuming, once.
            branch = (await client.get(f"{server.url}/api/chat/t1/messages")).json()
            assert [m["id"] for m in branch] == ["u1"]
            async with client.stream("GET", f"{server.url}/api/chat/t1/stream") as resumed:
                assert resumed.status_code == 200
                assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
                replay = [c async for c in chunks(resumed)]
            assert replay[0] == start
            assert replay[-1] == "[DONE]"
            assert text_of(replay) == numbers(200)
            assert (await client.get(f"{server.url}/api/chat/t1/stream")).status_code == 204
            branch = (await client.get(f"{server.url}/api/chat/t1/messages")).json()
            assert [m["id"] for m in branch] == ["u1", start["messageId"]]


async def test_stop_ends_the_generation_and_keeps_the_partial_reply(server_database_url: str) -> None:
    with running_server(server_database_url, env={"CHATKEEP_DEMO_DELAY_MS": "10"}) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"id": "t1", "messages": [user("count to 500")]}
            async with client.stream("POST", f"{server.url}/api/chat", json=body) as response:
                seen = await read_until(response, 20)
                stopped = await client.post(f"{server.url}/api/chat/t1/stop")
                assert stopped.status_code == 204
                seen += [c async for c in chunks(response)]
            assert seen[-2:] == [{"type": "abort"}, "[DONE]"]
            assert (await client.get(f"{server.url}/api/chat/t1/stream")).status_code == 204
            stored = await rows(client, server.url, "t1")
            assert stored[1]["status"] == "aborted"
            text = stored[1]["content"]["parts"][1]
            assert text["state"] == "done" and text["text"] == text_of(seen)
            count = len(text["text"].split())
            assert 20 <= count < 500 and text["text"] == numbers(count)
            await asyncio.sleep(0.5)  # the model really stopped: nothing more is produced
            assert await rows(client, server.url, "t1") == stored
            assert (await client.post(f"{server.url}/api/chat/t1/stop")).status_code == 204
            assert (await client.post(f"{server.url}/api/chat/no-such-thread/stop")).status_code == 204


async def test_kill_9_loses_at_most_the_last_second(server_database_url: str) -> None:
    env = {"CHATKEEP_DEMO_DELAY_MS": "15"}
    async with httpx.AsyncClient(timeout=30) as client:
        with running_server(server_database_url, env=env) as server:
            body = {"id": "t1", "messages": [user("count to 400")]}
            seen: list[dict[str, Any] | str] = []
            async with client.stream("POST", f"{server.url}/api/chat", json=body) as response:
                started = time.monotonic()
                async for chunk in chunks(response):
                    seen.append(chunk)
                    if time.monotonic() - started > 2.5:
                        break
                server.process.kill()  # SIGKILL: no shutdown code runs
                server.process.wait()
        received = len(text_of(seen).split())
        assert 50 < received < 400

        with running_server(server_database_url, env=env) as restarted:
            stored = await rows(client, restarted.url, "t1")
            assert [r["id"] for r in stored][0] == "u1"
            reply = stored[1]
            assert reply["status"] == "interrupted"
            text = reply["content"]["parts"][1]
            assert text["state"] == "done"
            kept = len(text["text"].split())
            assert text["text"] == numbers(kept)
            # Rebuilt from the chunk log: all but the last flush (200 ms, 15 ms per number ≈ 14 numbers), give or
            # take what the client had not read yet when the server died.
            assert received - 30 <= kept <= 400, (received, kept)
            assert (await client.get(f"{restarted.url}/api/chat/t1/stream")).status_code == 204
            # The thread keeps working.
            again = {"id": "t1", "messages": [user("count to 3", "u2")]}
            async with client.stream("POST", f"{restarted.url}/api/chat", json=again) as response:
                assert text_of([c async for c in chunks(response)]) == "1 2 3"


def _redis_available() -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:  # CI starts Redis; a machine without it must fail loudly, not skip
        raise AssertionError(f"Redis is needed on {REDIS_URL} for this test: {exc}") from exc


@pytest.fixture
def pg_database_url(create_pg_database: Callable[[], str]) -> str:
    return create_pg_database()


async def test_a_stream_started_on_one_process_resumes_and_stops_on_another(pg_database_url: str) -> None:
    _redis_available()
    database = pg_database_url
    env = {"CHATKEEP_DEMO_DELAY_MS": "10", "REDIS_URL": REDIS_URL}
    with running_server(database, env=env) as one, running_server(database, env=env) as two:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"id": "t1", "messages": [user("count to 200")]}
            async with client.stream("POST", f"{one.url}/api/chat", json=body) as response:
                first = await read_until(response, 5)
            async with client.stream("GET", f"{two.url}/api/chat/t1/stream") as resumed:
                assert resumed.status_code == 200
                replay = [c async for c in chunks(resumed)]
            assert replay[0] == first[0] and replay[-1] == "[DONE]"
            assert text_of(replay) == numbers(200)
            assert (await client.get(f"{two.url}/api/chat/t1/stream")).status_code == 204

            body = {"id": "t2", "messages": [user("count to 500")]}
            async with client.stream("POST", f"{one.url}/api/chat", json=body) as response:
                await read_until(response, 10)
                assert (await client.post(f"{two.url}/api/chat/t2/stop")).status_code == 204
                rest = [c async for c in chunks(response)]
            assert rest[-2:] == [{"type": "abort"}, "[DONE]"]
            stored = await rows(client, one.url, "t2")
            assert stored[1]["status"] == "aborted"
