"""Concurrent writers to one thread: nothing lost or duplicated, order keys unique, the tree consistent."""

from __future__ import annotations

import asyncio

import httpx

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore


def _text(value: str) -> dict[str, object]:
    return {"role": "user", "parts": [{"type": "text", "text": value}]}


async def test_concurrent_appends_to_one_thread(store: ChatStore) -> None:
    thread, _ = await store.create_thread("u1")
    ids = [f"m{i:02d}" for i in range(24)]
    await asyncio.gather(
        *(store.upsert_message("u1", thread.id, message_id=m, parent_id=None, content=_text(m)) for m in ids)
    )
    messages = (await store.list_messages("u1", thread.id)).items
    assert sorted(m.id for m in messages) == ids
    assert [m.seq for m in messages] == list(range(1, len(ids) + 1))
    assert (await store.get_thread("u1", thread.id)).head_id == messages[-1].id


async def test_a_cancelled_write_finishes_and_blocks_no_other_writer(store: ChatStore) -> None:
    """Cancelling a caller mid-write (a stopped reply, a checkpoint, a client that went away) must neither leave
    a half-written message nor a connection that holds the database: on SQLite one used to keep the write lock,
    and the next writer failed with "database is locked" after ``busy_timeout``."""
    thread, _ = await store.create_thread("u1")
    reply = {"role": "assistant", "parts": [{"type": "text", "text": "x" * 200}] * 12}
    for i in range(40):
        task = asyncio.create_task(
            store.upsert_message("u1", thread.id, message_id=f"cut{i}", parent_id=None, content=reply)
        )
        await asyncio.sleep((i % 8) * 0.0005)  # cancel at every stage: before, during and after the transaction
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # returns once the write is over
        await store.upsert_message("u1", thread.id, message_id=f"next{i}", parent_id=None, content=_text("next"))
    messages = (await store.list_messages("u1", thread.id)).items
    assert [m.id for m in messages if m.id.startswith("next")] == [f"next{i}" for i in range(40)]
    for message in messages:
        expected = reply if message.id.startswith("cut") else _text("next")
        assert message.content == expected, "a message is stored whole or not at all"


async def test_concurrent_first_messages_create_one_thread(client: httpx.AsyncClient, store: ChatStore) -> None:
    """assistant-ui's first-message race, many times over: every append lands in one thread."""
    ids = [f"r{i}" for i in range(12)]
    rows = [{"id": m, "parent_id": None, "format": "ai-sdk/v6", "content": _text(m)} for m in ids]
    responses = await asyncio.gather(*(client.post("/api/threads/race-thread/messages", json=r) for r in rows))
    assert [r.status_code for r in responses] == [204] * len(rows)
    threads = (await client.get("/api/threads")).json()
    assert [t["id"] for t in threads] == ["race-thread"]
    stored = (await client.get("/api/threads/race-thread/messages")).json()
    assert sorted(r["id"] for r in stored) == sorted(ids)


async def test_concurrent_upserts_of_one_message_keep_one_row(store: ChatStore) -> None:
    thread, _ = await store.create_thread("u1")
    await asyncio.gather(
        *(
            store.upsert_message("u1", thread.id, message_id="same", parent_id=None, content=_text(str(i)))
            for i in range(10)
        )
    )
    messages = (await store.list_messages("u1", thread.id)).items
    assert len(messages) == 1
    assert messages[0].seq == 1


async def test_fifty_clients_appending_twenty_messages_each(store: ChatStore) -> None:
    """50 clients append 20 messages each to one thread at once, each client chaining its own messages: every
    message arrives exactly once, with the parent it was given, and the tree lists parents before children.
    (One user's 1,000 requests would trip the per-minute limit, which is not what this test is about.)"""
    app = create_app(Settings(migrate_on_start=False, requests_per_minute=0), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await _fifty_writers(client)


async def _fifty_writers(client: httpx.AsyncClient) -> None:
    thread = (await client.post("/api/threads")).json()["id"]

    async def writer(n: int) -> None:
        parent = None
        for i in range(20):
            message_id = f"c{n:02d}-{i:02d}"
            row = {"id": message_id, "parent_id": parent, "format": "ai-sdk/v6", "content": _text(message_id)}
            response = await client.post(f"/api/threads/{thread}/messages", json=row)
            assert response.status_code == 204, response.text
            parent = message_id

    await asyncio.gather(*(writer(n) for n in range(50)))
    rows = (await client.get(f"/api/threads/{thread}/messages")).json()
    assert len(rows) == 1000 and len({r["id"] for r in rows}) == 1000
    position = {r["id"]: i for i, r in enumerate(rows)}
    for row in rows:
        client_no, index = row["id"][1:].split("-")
        expected_parent = None if index == "00" else f"c{client_no}-{int(index) - 1:02d}"
        assert row["parent_id"] == expected_parent
        assert expected_parent is None or position[expected_parent] < position[row["id"]]
        assert row["content"] == _text(row["id"])
