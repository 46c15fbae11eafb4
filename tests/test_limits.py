"""Limits: requests per user per minute (in this process, or shared through Redis) and replies generating at once
per user; over a limit is a 429 with ``Retry-After``, and nothing is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.protocol.ids import generate_id
from chatkeep.providers.base import ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import count_rows

REDIS_URL = "redis://127.0.0.1:6379/0"


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def test_requests_per_minute_per_user(store: ChatStore) -> None:
    app = create_app(Settings(migrate_on_start=False, requests_per_minute=5), store=store)
    async with _client(app) as client:
        for _ in range(5):
            assert (await client.get("/api/threads")).status_code == 200
        refused = await client.post("/api/threads", json={"title": "one too many"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert (await count_rows(store))["threads"] == 0


async def test_the_limit_is_shared_by_every_process_through_redis(store: ChatStore) -> None:
    user = generate_id()  # a fresh counter in Redis for this run
    settings_user = Settings(migrate_on_start=False, local_user_id=user, requests_per_minute=4, redis_url=REDIS_URL)
    one, two = create_app(settings_user, store=store), create_app(settings_user, store=store)
    async with _client(one) as a, _client(two) as b:
        statuses = [(await (a if i % 2 else b).get("/api/threads")).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    for app in (one, two):
        await app.state.chatkeep.redis.close()


async def test_replies_generating_at_once_per_user(store: ChatStore) -> None:
    release = asyncio.Event()

    async def slow(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield "working"
        await release.wait()

    service = ChatService(store, FunctionModel(slow), max_concurrent_streams=1)
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    first = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "one"}]}
    turn = await service.start("local", "t1", messages=[first])
    async with _client(app) as client:
        second = {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "two"}]}
        refused = await client.post("/api/chat", json={"id": "t2", "messages": [second]})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        release.set()
        _ = [frame async for frame in turn.sse()]
        assert (await client.post("/api/chat", json={"id": "t2", "messages": [second]})).status_code == 200
    await service.close()


class TestSizeLimits:
    """Over a size limit is a 413 that names the offending place, and nothing is stored."""

    @staticmethod
    def _app(store: ChatStore) -> object:
        settings = Settings(
            migrate_on_start=False,
            max_messages_per_request=3,
            max_parts_per_message=4,
            max_text_chars=50,
            max_attachment_bytes=1024,
        )
        return create_app(settings, store=store)

    @staticmethod
    def _user(parts: list[dict[str, Any]], message_id: str = "u1") -> dict[str, Any]:
        return {"id": message_id, "role": "user", "parts": parts}

    async def test_chat_requests(self, store: ChatStore) -> None:
        text: dict[str, Any] = {"type": "text", "text": "hi"}
        cases = [
            ({"id": "t1", "messages": [self._user([text], f"u{i}") for i in range(4)]}, "body.messages"),
            ({"id": "t1", "messages": [self._user([text] * 5)]}, "body.messages[0].parts"),
            ({"id": "t1", "message": self._user([{"type": "text", "text": "x" * 51}])}, "body.message.parts[0].text"),
            (
                {"id": "t1", "messages": [self._user([text, {"type": "file", "mediaType": "image/png",
                                                            "url": "data:image/png;base64," + "A" * 2000}])]},
                "body.messages[0].parts[1].url",
            ),
        ]  # fmt: skip
        async with _client(self._app(store)) as client:
            for body, where in cases:
                response = await client.post("/api/chat", json=body)
                assert response.status_code == 413, response.text
                error = response.json()["error"]
                assert error["code"] == "payload_too_large" and error["message"].startswith(where + ":"), error
        assert await count_rows(store) == {"threads": 0, "messages": 0, "parts": 0}

    async def test_history_writes(self, store: ChatStore) -> None:
        content = {"role": "user", "parts": [{"type": "text", "text": "y" * 51}]}
        async with _client(self._app(store)) as client:
            thread = (await client.post("/api/threads")).json()["id"]
            row = {"id": "m1", "parent_id": None, "format": "ai-sdk/v6", "content": content}
            posted = await client.post(f"/api/threads/{thread}/messages", json=row)
            assert posted.status_code == 413 and "body.content.parts[0].text" in posted.json()["error"]["message"]
            put = await client.put(
                f"/api/threads/{thread}/messages/m1", json={"format": "ai-sdk/v6", "content": content}
            )
            assert put.status_code == 413
            small = {"role": "user", "parts": [{"type": "text", "text": "fits"}]}
            ok = await client.post(f"/api/threads/{thread}/messages", json={**row, "content": small})
            assert ok.status_code == 204
        assert (await count_rows(store))["messages"] == 1
