"""The per-user limit on replies generating at once holds under a burst: a turn is admitted or refused in the
transaction that registers its stream, so exactly the limit is admitted, in one process or several sharing the
database, and a refused turn stores nothing (no prompt, no thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.providers.base import ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import count_rows

LIMIT = 2
BURST = 12


def _user(message_id: str, text: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


class _HeldModel:
    """A model whose replies all wait for :attr:`release`; :attr:`started` counts the replies it began, and
    :attr:`on_start` is called as each begins."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.on_start: Callable[[], None] = lambda: None
        self.model = FunctionModel(self._reply)

    async def _reply(self, request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        self.started += 1
        self.on_start()
        await self.release.wait()
        yield "done"


def _app(store: ChatStore, model: _HeldModel) -> tuple[ChatService, httpx.AsyncClient]:
    service = ChatService(store, model.model, max_concurrent_streams=LIMIT)
    app = create_app(Settings(migrate_on_start=False, requests_per_minute=0), store=store, chat=service)
    return service, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60)


async def _seed_threads(store: ChatStore, count: int) -> list[str]:
    """Threads with one finished exchange each: a turn in one of them takes the general (non-fast) path."""
    ids = []
    for index in range(count):
        thread = f"old{index}"
        hi = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}
        hello = {"role": "assistant", "parts": [{"type": "text", "text": "hello"}]}
        await store.upsert_message("local", thread, message_id=f"{thread}-u", parent_id=None, content=hi,
                                   create_thread=True)  # fmt: skip
        await store.upsert_message("local", thread, message_id=f"{thread}-a", parent_id=f"{thread}-u", content=hello)
        ids.append(thread)
    return ids


def _bodies(old_threads: list[str]) -> list[dict[str, Any]]:
    """Half new chats (one message: PostgreSQL's one-round-trip path), half follow-ups in stored threads (the
    whole history: the general path)."""
    bodies: list[dict[str, Any]] = [
        {"id": f"new{i}", "messages": [_user(f"new{i}-u", "a new chat")]} for i in range(BURST - len(old_threads))
    ]
    for thread in old_threads:
        history = [
            _user(f"{thread}-u", "hi"),
            {"id": f"{thread}-a", "role": "assistant", "parts": [{"type": "text", "text": "hello"}]},
            _user(f"{thread}-u2", "and again"),
        ]
        bodies.append({"id": thread, "messages": history})
    return bodies


async def _burst(
    clients: list[httpx.AsyncClient], models: list[_HeldModel], bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    """Send every body at once (alternating between the clients), wait until each request is either refused or
    has its reply generating, then let the replies finish. (An admitted request's response, through ASGITransport,
    completes only with its reply.)"""
    decided = asyncio.Event()

    def note(*_: object) -> None:
        if sum(m.started for m in models) + sum(t.done() for t in tasks) == len(bodies):
            decided.set()

    for model in models:
        model.on_start = note
    tasks = [
        asyncio.create_task(clients[index % len(clients)].post("/api/chat", json=body))
        for index, body in enumerate(bodies)
    ]
    for task in tasks:
        task.add_done_callback(note)
    await asyncio.wait_for(decided.wait(), 60)
    for model in models:
        model.release.set()
    return list(await asyncio.gather(*tasks))


async def test_a_burst_admits_exactly_the_limit(store: ChatStore) -> None:
    old = await _seed_threads(store, BURST // 2)
    before = await count_rows(store)
    model = _HeldModel()
    service, client = _app(store, model)
    async with client:
        responses = await _burst([client], [model], _bodies(old))
    await service.close()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * LIMIT + [429] * (BURST - LIMIT), statuses
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limited" and refused.headers["retry-after"]
    # Nothing of a refused turn is stored: each admitted one added its prompt and its reply (and, for a new
    # chat, its thread).
    after = await count_rows(store)
    admitted_new = sum(1 for r, b in zip(responses, _bodies(old), strict=True) if r.status_code == 200
                       and b["id"].startswith("new"))  # fmt: skip
    assert after["threads"] == before["threads"] + admitted_new
    assert after["messages"] == before["messages"] + 2 * LIMIT


async def test_two_processes_sharing_the_database_admit_the_limit_between_them(
    store: ChatStore, database_url: str
) -> None:
    """Two services on their own engines (as two processes would be: nothing shared but the database), no
    Redis."""
    other_store = ChatStore.from_url(database_url, pool_size=5)
    models = [_HeldModel(), _HeldModel()]
    (one, client_one), (two, client_two) = _app(store, models[0]), _app(other_store, models[1])
    try:
        async with client_one, client_two:
            responses = await _burst([client_one, client_two], models, _bodies([]))
    finally:
        await one.close()
        await two.close()
        await other_store.close()
    assert sorted(r.status_code for r in responses) == [200] * LIMIT + [429] * (BURST - LIMIT)
    stored = await count_rows(store)
    assert (stored["threads"], stored["messages"]) == (LIMIT, 2 * LIMIT)
