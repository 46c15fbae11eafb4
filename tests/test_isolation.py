"""Users never see or touch each other's threads.

Alice owns a thread with messages. On every thread, message and chat route, Bob gets the same 404 for Alice's
ids as for ids that exist nowhere (same status, same code, same message once the ids are swapped), so a 404 never
tells him that the thread exists. None of his requests stores or changes anything: afterwards Alice's thread,
title, head and messages are exactly as before, and Bob's list is empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import text, true

from chatkeep.protocol import generate_id
from chatkeep.store import ChatStore
from tests.conftest import ClientFactory, count_rows


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "step-start"}, {"type": "text", "text": text}]}


@dataclass(frozen=True)
class Alice:
    client: httpx.AsyncClient
    thread: str
    snapshot: dict[str, Any]


async def _snapshot(client: httpx.AsyncClient, thread: str) -> dict[str, Any]:
    """Everything Alice can read about her thread."""
    out: dict[str, Any] = {}
    for key, path in (
        ("thread", f"/api/threads/{thread}"),
        ("messages", f"/api/threads/{thread}/messages"),
        ("chat", f"/api/chat/{thread}/messages"),
        ("list", "/api/threads"),
    ):
        response = await client.get(path)
        assert response.status_code == 200, response.text
        out[key] = response.json()
    return out


@pytest.fixture
async def alice(make_client: ClientFactory) -> Alice:
    client = await make_client("alice")
    response = await client.post(
        "/api/threads", json={"localId": "__LOCALID_alice01", "title": "Alice's secret", "custom": {"k": "v"}}
    )
    assert response.status_code == 201, response.text
    thread = cast(str, response.json()["id"])
    for row in (
        {"id": "u1", "parent_id": None, "format": "ai-sdk/v6", "content": _user("my secret")},
        {"id": "a1", "parent_id": "u1", "format": "ai-sdk/v6", "content": _assistant("noted")},
        {"id": "a2", "parent_id": "u1", "format": "ai-sdk/v6", "content": _assistant("noted again")},
        {"id": "x1", "parent_id": "a2", "format": "aui/v0", "content": {"opaque": True}},
    ):
        posted = await client.post(f"/api/threads/{thread}/messages", json=row)
        assert posted.status_code == 204, posted.text
    await client.patch(f"/api/threads/{thread}", json={"headId": "a1"})
    return Alice(client, thread, await _snapshot(client, thread))


@pytest.fixture
async def bob(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("bob")


_MESSAGE = {"format": "ai-sdk/v6", "content": _user("overwritten by bob")}

# (method, path with {t} for the thread id and {m} for a message id, JSON body)
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/threads/{t}", None),
    ("PATCH", "/api/threads/{t}", {"title": "pwned"}),
    ("PATCH", "/api/threads/{t}", {"status": "archived"}),
    ("PATCH", "/api/threads/{t}", {"custom": {"owner": "bob"}}),
    ("PATCH", "/api/threads/{t}", {"headId": "{m}"}),
    ("DELETE", "/api/threads/{t}", None),
    ("GET", "/api/threads/{t}/messages", None),
    ("GET", "/api/threads/{t}/messages?limit=1", None),
    ("POST", "/api/threads/{t}/messages", {"id": "{m}", "parent_id": None, **_MESSAGE}),
    ("POST", "/api/threads/{t}/messages", {"id": "bob-new", "parent_id": None, **_MESSAGE}),
    ("POST", "/api/threads/{t}/messages", {"id": "bob-new", "parent_id": "{m}", **_MESSAGE}),
    ("GET", "/api/threads/{t}/messages/{m}", None),
    ("PUT", "/api/threads/{t}/messages/{m}", _MESSAGE),
    ("PUT", "/api/threads/{t}/messages/{m}", {**_MESSAGE, "parent_id": None}),
    ("PUT", "/api/threads/{t}/messages/bob-new", _MESSAGE),
    ("PATCH", "/api/threads/{t}/messages/{m}", _MESSAGE),
    ("DELETE", "/api/threads/{t}/messages/{m}", None),
    ("GET", "/api/chat/{t}/messages", None),
    ("POST", "/api/threads/{t}/title", {"force": True}),
]

# Routes that answer "nothing there" without an error, for a missing thread and someone else's alike (what
# useChat({resume: true}) and a stop button expect): the same answer, and nothing changes.
QUIET_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/chat/{t}/stream", None),
    ("POST", "/api/chat/{t}/stop", None),
]

# Routes with no thread id in the path; their isolation is tested where they live.
ELSEWHERE = {
    ("GET", "/api/threads"): "test_bobs_list_is_empty below",
    ("POST", "/api/threads"): "creates Bob's own thread (tests/test_api_threads.py)",
    ("POST", "/api/chat"): "Alice's thread id in the body is a 404 (tests/test_chat.py)",
}


def _fill(value: Any, thread: str, message: str) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value).replace("{t}", thread).replace("{m}", message))


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, thread: str, message: str
) -> httpx.Response:
    url = path.replace("{t}", thread).replace("{m}", message)
    if body is None:
        return await client.request(method, url)
    return await client.request(method, url, json=_fill(body, thread, message))


class TestBobCannotReachAlicesThread:
    @pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p} {b}" for m, p, b in ROUTES])
    async def test_404_like_a_missing_thread_and_nothing_changes(
        self,
        alice: Alice,
        bob: httpx.AsyncClient,
        store: ChatStore,
        method: str,
        path: str,
        body: Any,
    ) -> None:
        counts = await count_rows(store)
        response = await _call(bob, method, path, body, alice.thread, "u1")
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/json")

        missing = f"missing-{generate_id()}"
        if method == "POST" and path.endswith("/messages"):
            # A POST of a message to a thread id nobody has creates it (the first-message race), so the 404 to
            # compare with is the one the same route family gives for a missing thread.
            baseline = await _call(bob, "GET", path, None, missing, "u1")
        else:
            baseline = await _call(bob, method, path, body, missing, "u1")
        assert baseline.status_code == 404, baseline.text
        assert response.json()["error"]["code"] == baseline.json()["error"]["code"] == "thread_not_found"
        assert response.text.replace(alice.thread, missing) == baseline.text, "the 404 must not tell them apart"

        assert await count_rows(store) == counts
        assert await _snapshot(alice.client, alice.thread) == alice.snapshot

    async def test_bobs_post_into_alices_thread_id_stores_nothing(
        self, alice: Alice, bob: httpx.AsyncClient, store: ChatStore
    ) -> None:
        """The first-message race creates a missing thread for the caller, never takes over another's."""
        counts = await count_rows(store)
        for message_id in ("u1", "a1", "bob-1"):
            row = {"id": message_id, "parent_id": None, "format": "ai-sdk/v6", "content": _user("mine now")}
            response = await bob.post(f"/api/threads/{alice.thread}/messages", json=row)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "thread_not_found"
        assert await count_rows(store) == counts
        assert await _snapshot(alice.client, alice.thread) == alice.snapshot
        assert (await bob.get("/api/threads")).json() == []

    async def test_bob_sees_an_empty_list(self, alice: Alice, bob: httpx.AsyncClient) -> None:
        for params in ({}, {"status": "regular"}, {"status": "archived"}, {"limit": 1}):
            response = await bob.get("/api/threads", params=params)
            assert response.status_code == 200
            assert response.json() == []
            assert "x-next-cursor" not in response.headers
        assert [t["id"] for t in alice.snapshot["list"]] == [alice.thread]

    async def test_alices_cursor_gives_bob_nothing(self, alice: Alice, bob: httpx.AsyncClient) -> None:
        second = await alice.client.post("/api/threads", json={"title": "second"})
        assert second.status_code == 201
        page = await alice.client.get("/api/threads", params={"limit": 1})
        cursor = page.headers["x-next-cursor"]
        response = await bob.get("/api/threads", params={"limit": 1, "after": cursor})
        assert response.status_code == 200
        assert response.json() == []

    async def test_the_same_local_id_gives_bob_his_own_thread(
        self, alice: Alice, bob: httpx.AsyncClient, store: ChatStore
    ) -> None:
        response = await bob.post("/api/threads", json={"localId": "__LOCALID_alice01"})
        assert response.status_code == 201, response.text
        assert response.json()["id"] != alice.thread
        assert response.json()["title"] is None
        assert (await count_rows(store))["threads"] == 2
        assert await _snapshot(alice.client, alice.thread) == alice.snapshot

    async def test_bob_may_use_the_same_message_ids_in_his_own_thread(
        self, alice: Alice, bob: httpx.AsyncClient
    ) -> None:
        created = await bob.post("/api/threads")
        thread = created.json()["id"]
        row = {"id": "u1", "parent_id": None, "format": "ai-sdk/v6", "content": _user("bob's own")}
        assert (await bob.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
        assert [m["content"] for m in (await bob.get(f"/api/threads/{thread}/messages")).json()] == [_user("bob's own")]
        assert await _snapshot(alice.client, alice.thread) == alice.snapshot

    async def test_alice_cannot_reach_bobs_thread_either(self, alice: Alice, bob: httpx.AsyncClient) -> None:
        created = await bob.post("/api/threads", json={"title": "bob's"})
        thread = created.json()["id"]
        response = await alice.client.get(f"/api/threads/{thread}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "thread_not_found"
        assert (await bob.get(f"/api/threads/{thread}")).json()["title"] == "bob's"


def test_every_route_of_the_app_is_covered(alice_app_routes: set[tuple[str, str]]) -> None:
    """Derived from the app's route table: a new route fails here until it is added to a list above."""
    covered = {(m, p.split("?")[0].replace("{t}", "{thread_id}").replace("{m}", "{message_id}")) for m, p, _ in ROUTES}
    covered |= {(m, p.replace("{t}", "{thread_id}")) for m, p, _ in QUIET_ROUTES}
    covered |= set(ELSEWHERE)
    missing = alice_app_routes - covered
    assert not missing, f"routes without an isolation test: {sorted(missing)}"


@pytest.fixture
def alice_app_routes() -> set[tuple[str, str]]:
    from fastapi.routing import APIRoute

    from chatkeep.api import create_app
    from chatkeep.settings import Settings

    app = create_app(Settings(migrate_on_start=False), store=ChatStore.from_url("sqlite:///:memory:"))
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith("/api/")
        for method in route.methods or ()
    }


class TestQuietRoutes:
    @pytest.mark.parametrize(("method", "path", "body"), QUIET_ROUTES, ids=[f"{m} {p}" for m, p, _ in QUIET_ROUTES])
    async def test_the_same_answer_as_for_a_missing_thread_and_nothing_changes(
        self, alice: Alice, bob: httpx.AsyncClient, store: ChatStore, method: str, path: str, body: Any
    ) -> None:
        counts = await count_rows(store)
        response = await _call(bob, method, path, body, alice.thread, "u1")
        baseline = await _call(bob, method, path, body, f"missing-{generate_id()}", "u1")
        assert (response.status_code, response.content) == (baseline.status_code, baseline.content) == (204, b"")
        assert await count_rows(store) == counts
        assert await _snapshot(alice.client, alice.thread) == alice.snapshot


class TestRowLevelSecurity:
    """On PostgreSQL the database itself keeps users apart: with the one user filter every thread query goes
    through (``chatkeep.store.chat_store._owned``) removed, as a buggy query would, Bob still gets nothing of
    Alice's. On SQLite, which has no row-level security, the same bug does leak: proof that the patch really
    removes the filter, so the PostgreSQL half cannot pass for the wrong reason."""

    @pytest.fixture(autouse=True)
    def _forget_the_user_filter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("chatkeep.store.chat_store._owned", lambda user_id: true())

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p} {b}" for m, p, b in ROUTES])
    async def test_postgresql_still_gives_bob_nothing(
        self, backend: str, alice: Alice, bob: httpx.AsyncClient, store: ChatStore, method: str, path: str, body: Any
    ) -> None:
        if backend != "postgresql":
            pytest.skip("row-level security is PostgreSQL's; the SQLite half is test_sqlite_leaks_without_it")
        counts = await count_rows(store)
        response = await _call(bob, method, path, body, alice.thread, "u1")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "thread_not_found"
        assert (await bob.get("/api/threads")).json() == []
        chat = await bob.post("/api/chat", json={"id": alice.thread, "message": {"id": "b1", **_user("hi")}})
        assert chat.status_code == 404, chat.text
        assert await count_rows(store) == counts
        assert await _snapshot(alice.client, alice.thread) == alice.snapshot

    async def test_sqlite_leaks_without_it(
        self, backend: str, alice: Alice, bob: httpx.AsyncClient, store: ChatStore
    ) -> None:
        if backend != "sqlite":
            pytest.skip("the PostgreSQL half is test_postgresql_still_gives_bob_nothing")
        response = await bob.get(f"/api/threads/{alice.thread}")
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "Alice's secret"
        assert [t["id"] for t in (await bob.get("/api/threads")).json()] == [alice.thread]

    async def test_chatkeep_connects_as_a_role_bound_by_it(self, backend: str, store: ChatStore) -> None:
        assert await store.bypasses_row_security() is False
        if backend == "postgresql":
            async with store.engine.connect() as conn:
                # a transaction that does not say whom it acts for sees nothing at all
                assert (await conn.execute(text("SELECT count(*) FROM threads"))).scalar_one() == 0
