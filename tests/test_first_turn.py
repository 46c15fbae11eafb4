"""The first message of a new chat is stored without reading the thread first (PostgreSQL: one round trip, which
creates the thread too), and every case where the thread matters still reads it: the results are those of the
general path either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import count_rows
from tests.test_chat import post_chat, user


@pytest.fixture
async def reads(store: ChatStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads whose tree a turn read."""
    seen: list[str] = []
    load_tree = store.load_tree

    async def counted(user_id: str, thread_id: str) -> Any:
        seen.append(thread_id)
        return await load_tree(user_id, thread_id)

    monkeypatch.setattr(store, "load_tree", counted)
    return seen


@pytest.fixture
async def bob(store: ChatStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(migrate_on_start=False, local_user_id="bob", demo_delay_ms=0), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as c:
        yield c


async def _wait(client: httpx.AsyncClient, thread: str, count: int) -> list[dict[str, Any]]:
    for _ in range(100):
        rows: list[dict[str, Any]] = (await client.get(f"/api/threads/{thread}/messages")).json()
        if len(rows) == count and all(r["status"] != "streaming" for r in rows):
            return rows
        await client.get("/healthz")
    raise AssertionError(f"thread {thread} never had {count} messages")


async def test_a_new_chat_is_not_read_first(
    backend: str, client: httpx.AsyncClient, reads: list[str], store: ChatStore
) -> None:
    chunks = await post_chat(client, {"id": "t1", "messages": [user("hi there")], "trigger": "submit-message"})
    assert chunks[0]["type"] == "start"
    rows = await _wait(client, "t1", 2)
    assert [(r["id"], r["parent_id"]) for r in rows] == [("u1", None), (chunks[0]["messageId"], "u1")]
    assert rows[0]["content"] == {"role": "user", "parts": [{"type": "text", "text": "hi there"}]}
    assert reads == ([] if backend == "postgresql" else ["t1"])  # SQLite has no one-round-trip insert


async def test_a_new_root_in_a_thread_with_messages_needs_no_read_either(
    backend: str, client: httpx.AsyncClient, reads: list[str]
) -> None:
    first = await post_chat(client, {"id": "t1", "messages": [user("one")]})
    await _wait(client, "t1", 2)
    # A client that sends only a new message starts a new branch at the root, whatever the thread holds.
    second = await post_chat(client, {"id": "t1", "messages": [user("two", "u2")]})
    rows = await _wait(client, "t1", 4)
    assert [(r["id"], r["parent_id"]) for r in rows] == [
        ("u1", None), (first[0]["messageId"], "u1"), ("u2", None), (second[0]["messageId"], "u2"),
    ]  # fmt: skip
    assert (await client.get("/api/threads/t1")).json()["headId"] == second[0]["messageId"]
    assert reads == ([] if backend == "postgresql" else ["t1", "t1"])


async def test_a_stored_message_sent_again_reads_the_thread(client: httpx.AsyncClient, reads: list[str]) -> None:
    await post_chat(client, {"id": "t1", "messages": [user("one")]})
    await _wait(client, "t1", 2)
    reads.clear()
    again = await post_chat(client, {"id": "t1", "messages": [user("one")], "trigger": "submit-message"})
    rows = await _wait(client, "t1", 3)
    assert reads == ["t1"]
    # as the general path always did: the resent prompt is answered again (a regeneration), not stored twice
    assert [(r["id"], r["parent_id"]) for r in rows][-1] == (again[0]["messageId"], "u1")
    assert [r["id"] for r in rows].count("u1") == 1


async def test_someone_elses_thread_is_still_not_found(
    client: httpx.AsyncClient, bob: httpx.AsyncClient, store: ChatStore
) -> None:
    await post_chat(client, {"id": "t1", "messages": [user("mine")]})
    await _wait(client, "t1", 2)
    counts = await count_rows(store)
    response = await bob.post("/api/chat", json={"id": "t1", "messages": [user("hijack", "b1")]})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "thread_not_found"
    assert await count_rows(store) == counts


async def test_an_invalid_first_message_is_refused_as_before(client: httpx.AsyncClient, store: ChatStore) -> None:
    bad = {"id": "u1", "role": "user", "parts": [{"type": "text"}]}
    response = await client.post("/api/chat", json={"id": "t1", "messages": [bad]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"].startswith("body.messages[0].parts[0]")
    assert (await count_rows(store))["threads"] == 0
