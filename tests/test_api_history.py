"""``/api/threads/{id}/messages`` and ``/api/chat/{id}/messages``: assistant-ui's ``withFormat`` history.

Pins down the message tree: rows come back parents first with ``content`` as written, the active branch follows
the head (the last message written, or the one chosen with ``PATCH headId``), writes are idempotent upserts that
keep a message's place, a parent must be an earlier message of the same thread (409 otherwise, nothing stored),
deleting a message re-parents its children, formats other than the AI SDK's are kept verbatim and left out of
the chat view, paging, message ids scoped per thread, and the first-message race creating the thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import count_rows


@pytest.fixture
async def plain_client(store: ChatStore) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but a server error comes back as its 500 response instead of being raised in the test."""
    app = create_app(Settings(migrate_on_start=False), store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://chatkeep.test") as c:
        yield c


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


def _assistant(*texts: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "metadata": {"model": "demo"},
        "parts": [{"type": "step-start"}, *({"type": "text", "text": t, "state": "done"} for t in texts)],
    }


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    error = cast(dict[str, Any], body["error"])
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


async def _thread(client: httpx.AsyncClient) -> str:
    response = await client.post("/api/threads")
    assert response.status_code == 201, response.text
    return cast(str, response.json()["id"])


def _row(message_id: str, parent_id: str | None, content: dict[str, Any], fmt: str = "ai-sdk/v6") -> dict[str, Any]:
    return {"id": message_id, "parent_id": parent_id, "format": fmt, "content": content}


async def _post(client: httpx.AsyncClient, thread: str, row: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/api/threads/{thread}/messages", json=row)


async def _append(
    client: httpx.AsyncClient,
    thread: str,
    message_id: str,
    parent_id: str | None,
    content: dict[str, Any],
    fmt: str = "ai-sdk/v6",
) -> dict[str, Any]:
    row = _row(message_id, parent_id, content, fmt)
    response = await _post(client, thread, row)
    assert response.status_code == 204, response.text
    assert response.content == b""
    return row


async def _rows(client: httpx.AsyncClient, thread: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/api/threads/{thread}/messages", params=params)
    assert response.status_code == 200, response.text
    return cast(list[dict[str, Any]], response.json())


async def _chat(client: httpx.AsyncClient, thread: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/chat/{thread}/messages")
    assert response.status_code == 200, response.text
    return cast(list[dict[str, Any]], response.json())


async def _head(client: httpx.AsyncClient, thread: str) -> str | None:
    return cast("str | None", (await client.get(f"/api/threads/{thread}")).json()["headId"])


def _stored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without ``created_at`` and ``status`` (what the server adds), comparable with what was posted."""
    assert all(row["status"] == "complete" for row in rows)
    return [{k: v for k, v in row.items() if k not in ("created_at", "status")} for row in rows]


def _assert_parents_first(rows: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for row in rows:
        assert row["parent_id"] is None or row["parent_id"] in seen, f"{row['id']} comes before its parent"
        seen.add(row["id"])


# The contract's worked example (assistant-ui-contract.md §2): first send, edit, regenerate.
U1, A1, U2, A2, A3 = _user("Hi"), _assistant("Hello!"), _user("Hello"), _assistant("Hi there"), _assistant("Hey")


async def _worked_example(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    thread = await _thread(client)
    rows = [
        await _append(client, thread, "u1", None, U1),
        await _append(client, thread, "a1", "u1", A1),
        await _append(client, thread, "u2", None, U2),
        await _append(client, thread, "a2", "u2", A2),
        await _append(client, thread, "a3", "u2", A3),
    ]
    return thread, rows


class TestBranchedTree:
    async def test_rows_come_back_parents_first_as_written(self, client: httpx.AsyncClient) -> None:
        thread, written = await _worked_example(client)
        rows = await _rows(client, thread)
        assert _stored(rows) == written
        assert [(r["id"], r["parent_id"]) for r in rows] == [
            ("u1", None),
            ("a1", "u1"),
            ("u2", None),
            ("a2", "u2"),
            ("a3", "u2"),
        ]
        _assert_parents_first(rows)
        assert all(set(row) == {"id", "parent_id", "format", "content", "created_at", "status"} for row in rows)

    async def test_the_active_branch_ends_at_the_last_message(self, client: httpx.AsyncClient) -> None:
        thread, _ = await _worked_example(client)
        assert await _head(client, thread) == "a3"
        assert await _chat(client, thread) == [{"id": "u2", **U2}, {"id": "a3", **A3}]

    async def test_head_id_switches_the_active_branch(self, client: httpx.AsyncClient) -> None:
        thread, written = await _worked_example(client)
        response = await client.patch(f"/api/threads/{thread}", json={"headId": "a1"})
        assert response.status_code == 200, response.text
        assert await _chat(client, thread) == [{"id": "u1", **U1}, {"id": "a1", **A1}]
        assert _stored(await _rows(client, thread)) == written, "switching branch must not touch the rows"

        await client.patch(f"/api/threads/{thread}", json={"headId": "a2"})
        assert await _chat(client, thread) == [{"id": "u2", **U2}, {"id": "a2", **A2}]

        await client.patch(f"/api/threads/{thread}", json={"headId": "u2"})
        assert await _chat(client, thread) == [{"id": "u2", **U2}]

    async def test_a_new_message_becomes_the_head(self, client: httpx.AsyncClient) -> None:
        thread, _ = await _worked_example(client)
        await client.patch(f"/api/threads/{thread}", json={"headId": "a1"})
        await _append(client, thread, "u3", "a1", _user("And then?"))
        assert await _head(client, thread) == "u3"
        assert [m["id"] for m in await _chat(client, thread)] == ["u1", "a1", "u3"]

    async def test_a_long_linear_chain(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        parent: str | None = None
        for i in range(30):
            message_id = f"m{i:02d}"
            await _append(client, thread, message_id, parent, _user(f"#{i}") if i % 2 == 0 else _assistant(f"#{i}"))
            parent = message_id
        assert [m["id"] for m in await _chat(client, thread)] == [f"m{i:02d}" for i in range(30)]

    async def test_empty_thread(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        assert await _rows(client, thread) == []
        assert await _chat(client, thread) == []

    async def test_get_one_message(self, client: httpx.AsyncClient) -> None:
        thread, written = await _worked_example(client)
        response = await client.get(f"/api/threads/{thread}/messages/a2")
        assert response.status_code == 200, response.text
        assert _stored([response.json()]) == [written[3]]
        _error(await client.get(f"/api/threads/{thread}/messages/nope"), 404, "message_not_found")


class TestUpsert:
    async def test_same_row_twice_is_one_row(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        row = await _append(client, thread, "u1", None, _user("Hi"))
        once = await count_rows(store)
        await _append(client, thread, "u1", None, _user("Hi"))
        assert await count_rows(store) == once
        assert _stored(await _rows(client, thread)) == [row]

    async def test_content_is_replaced_and_the_place_kept(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("one", "two", "three"))
        await _append(client, thread, "u2", "a1", _user("More"))
        before = await _rows(client, thread)
        counts = await count_rows(store)

        final = _assistant("only one")
        await _append(client, thread, "a1", "u1", final)

        after = await _rows(client, thread)
        assert [r["id"] for r in after] == ["u1", "a1", "u2"]
        assert after[1]["content"] == final
        assert after[1]["created_at"] == before[1]["created_at"]
        assert await count_rows(store) == {**counts, "parts": counts["parts"] - 2}
        assert await _head(client, thread) == "u2", "an update must not move the head"
        assert [m["id"] for m in await _chat(client, thread)] == ["u1", "a1", "u2"]

    async def test_an_upsert_may_change_the_format(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        await _append(client, thread, "m", None, _user("typed"))
        opaque = {"role": "user", "content": [{"type": "text", "text": "opaque"}]}
        await _append(client, thread, "m", None, opaque, "aui/v0")
        assert _stored(await _rows(client, thread)) == [_row("m", None, opaque, "aui/v0")]
        assert (await count_rows(store))["parts"] == 0
        await _append(client, thread, "m", None, _user("typed again"))
        assert _stored(await _rows(client, thread)) == [_row("m", None, _user("typed again"))]
        assert (await count_rows(store))["parts"] == 1

    async def test_concurrent_appends_of_distinct_messages(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        await _append(client, thread, "root", None, _user("root"))
        responses = await asyncio.gather(
            *(_post(client, thread, _row(f"c{i}", "root", _assistant(f"{i}"))) for i in range(8))
        )
        assert [r.status_code for r in responses] == [204] * 8
        rows = await _rows(client, thread)
        assert {r["id"] for r in rows} == {"root", *(f"c{i}" for i in range(8))}
        _assert_parents_first(rows)
        assert await count_rows(store) == {"threads": 1, "messages": 9, "parts": 1 + 8 * 2}


class TestParentChecks:
    async def test_unknown_parent_is_409_and_nothing_is_stored(
        self, client: httpx.AsyncClient, store: ChatStore
    ) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        counts = await count_rows(store)
        before = (await client.get(f"/api/threads/{thread}")).json()

        error = _error(await _post(client, thread, _row("a1", "ghost", _assistant("x"))), 409, "parent_not_found")
        assert "ghost" in error["message"]
        assert await count_rows(store) == counts
        assert (await client.get(f"/api/threads/{thread}")).json() == before
        _error(await client.get(f"/api/threads/{thread}/messages/a1"), 404, "message_not_found")

    async def test_a_parent_in_another_thread_is_409(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread, other = await _thread(client), await _thread(client)
        await _append(client, other, "elsewhere", None, _user("Hi"))
        counts = await count_rows(store)
        _error(await _post(client, thread, _row("a1", "elsewhere", _assistant("x"))), 409, "parent_not_found")
        assert await count_rows(store) == counts

    async def test_an_unknown_parent_in_a_new_thread_creates_no_thread(
        self, client: httpx.AsyncClient, store: ChatStore
    ) -> None:
        _error(await _post(client, "fresh-thread", _row("a1", "ghost", _assistant("x"))), 409, "parent_not_found")
        assert await count_rows(store) == {"threads": 0, "messages": 0, "parts": 0}
        _error(await client.get("/api/threads/fresh-thread"), 404, "thread_not_found")

    async def test_a_message_cannot_be_its_own_parent(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        _error(await _post(client, thread, _row("m", "m", _user("x"))), 409, "parent_not_found")
        await _append(client, thread, "m", None, _user("x"))
        _error(await _post(client, thread, _row("m", "m", _user("x"))), 409, "parent_not_found")
        _error(
            await client.put(f"/api/threads/{thread}/messages/m", json={"format": "ai-sdk/v6", "content": _user("x"),
                                                                          "parent_id": "m"}),
            409,
            "parent_not_found",
        )  # fmt: skip
        assert (await _rows(client, thread))[0]["parent_id"] is None

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
    async def test_reparenting_under_a_later_message_is_409(
        self, client: httpx.AsyncClient, store: ChatStore, method: str
    ) -> None:
        """Moving an old message under a newer one would list a child before its parent (or make a cycle)."""
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Hello"))
        await _append(client, thread, "u2", "a1", _user("More"))
        before = await _rows(client, thread)
        counts = await count_rows(store)
        if method == "POST":
            response = await _post(client, thread, _row("u1", "u2", _user("Hi")))
        else:
            body = {"format": "ai-sdk/v6", "content": _user("Hi"), "parent_id": "u2"}
            response = await client.request(method, f"/api/threads/{thread}/messages/u1", json=body)
        _error(response, 409, "parent_not_found")
        assert await _rows(client, thread) == before
        assert await count_rows(store) == counts

    async def test_reparenting_under_an_earlier_message_is_fine(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "u2", None, _user("Hey"))
        await _append(client, thread, "a2", "u2", _assistant("Hello"))
        body = {"format": "ai-sdk/v6", "content": _assistant("Hello"), "parent_id": "u1"}
        assert (await client.put(f"/api/threads/{thread}/messages/a2", json=body)).status_code == 204
        rows = await _rows(client, thread)
        assert [(r["id"], r["parent_id"]) for r in rows] == [("u1", None), ("u2", None), ("a2", "u1")]


class TestUpdate:
    @pytest.mark.parametrize("method", ["PUT", "PATCH"])
    async def test_update_without_parent_id_keeps_the_parent(self, client: httpx.AsyncClient, method: str) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Thinking"))
        before = await _rows(client, thread)
        final = _assistant("Done")
        body = {"format": "ai-sdk/v6", "content": final}
        response = await client.request(method, f"/api/threads/{thread}/messages/a1", json=body)
        assert response.status_code == 204, response.text
        rows = await _rows(client, thread)
        assert [(r["id"], r["parent_id"]) for r in rows] == [("u1", None), ("a1", "u1")]
        assert rows[1]["content"] == final
        assert rows[1]["created_at"] == before[1]["created_at"]

    async def test_update_with_parent_id_null_makes_a_root(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Hello"))
        body = {"format": "ai-sdk/v6", "content": _assistant("Hello"), "parent_id": None}
        assert (await client.put(f"/api/threads/{thread}/messages/a1", json=body)).status_code == 204
        assert [r["parent_id"] for r in await _rows(client, thread)] == [None, None]

    async def test_update_with_the_same_id_in_the_body(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        body = {"id": "u1", "format": "ai-sdk/v6", "content": _user("Edited")}
        assert (await client.put(f"/api/threads/{thread}/messages/u1", json=body)).status_code == 204
        assert (await _rows(client, thread))[0]["content"] == _user("Edited")

    async def test_update_with_another_id_in_the_body_is_422(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        body = {"id": "u2", "format": "ai-sdk/v6", "content": _user("Edited")}
        error = _error(await client.put(f"/api/threads/{thread}/messages/u1", json=body), 422, "validation_error")
        assert error["details"][0]["loc"] == "body.id"
        assert [(r["id"], r["content"]) for r in await _rows(client, thread)] == [("u1", _user("Hi"))]

    async def test_update_of_an_unknown_message_creates_it(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        body = {"format": "ai-sdk/v6", "content": _assistant("late"), "parent_id": "u1"}
        assert (await client.put(f"/api/threads/{thread}/messages/a1", json=body)).status_code == 204
        assert [(r["id"], r["parent_id"]) for r in await _rows(client, thread)] == [("u1", None), ("a1", "u1")]
        assert await _head(client, thread) == "a1"

    async def test_update_in_a_missing_thread_is_404(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        body = {"format": "ai-sdk/v6", "content": _user("x")}
        _error(await client.put("/api/threads/missing/messages/m", json=body), 404, "thread_not_found")
        assert await count_rows(store) == {"threads": 0, "messages": 0, "parts": 0}


class TestDeleteMessage:
    async def test_deleting_a_middle_message_reparents_its_children(
        self, client: httpx.AsyncClient, store: ChatStore
    ) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("one", "two"))
        await _append(client, thread, "u2", "a1", _user("Edit A"))
        await _append(client, thread, "u3", "a1", _user("Edit B"))
        await _append(client, thread, "a3", "u3", _assistant("reply"))
        counts = await count_rows(store)

        response = await client.delete(f"/api/threads/{thread}/messages/a1")
        assert response.status_code == 204
        assert response.content == b""

        rows = await _rows(client, thread)
        assert [(r["id"], r["parent_id"]) for r in rows] == [("u1", None), ("u2", "u1"), ("u3", "u1"), ("a3", "u3")]
        _assert_parents_first(rows)
        assert await count_rows(store) == {
            "threads": 1,
            "messages": counts["messages"] - 1,
            "parts": counts["parts"] - 3,
        }
        assert await _head(client, thread) == "a3"
        assert [m["id"] for m in await _chat(client, thread)] == ["u1", "u3", "a3"]
        _error(await client.get(f"/api/threads/{thread}/messages/a1"), 404, "message_not_found")

    async def test_deleting_the_head_moves_the_head_to_its_parent(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Hello"))
        await _append(client, thread, "a2", "u1", _assistant("Regenerated"))
        assert (await client.delete(f"/api/threads/{thread}/messages/a2")).status_code == 204
        assert await _head(client, thread) == "u1"
        assert [m["id"] for m in await _chat(client, thread)] == ["u1"]

    async def test_deleting_a_root_makes_its_children_roots(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Hello"))
        await _append(client, thread, "a2", "u1", _assistant("Hey"))
        assert (await client.delete(f"/api/threads/{thread}/messages/u1")).status_code == 204
        assert [(r["id"], r["parent_id"]) for r in await _rows(client, thread)] == [("a1", None), ("a2", None)]
        assert [m["id"] for m in await _chat(client, thread)] == ["a2"]

    async def test_deleting_the_only_message(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        assert (await client.delete(f"/api/threads/{thread}/messages/u1")).status_code == 204
        assert await _head(client, thread) is None
        assert await _chat(client, thread) == []
        assert await count_rows(store) == {"threads": 1, "messages": 0, "parts": 0}

    async def test_deleting_a_missing_message_is_404(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        counts = await count_rows(store)
        _error(await client.delete(f"/api/threads/{thread}/messages/nope"), 404, "message_not_found")
        _error(await client.delete("/api/threads/missing/messages/u1"), 404, "thread_not_found")
        assert await count_rows(store) == counts

    async def test_a_deleted_id_can_be_written_again(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Hello"))
        assert (await client.delete(f"/api/threads/{thread}/messages/u1")).status_code == 204
        await _append(client, thread, "u1", "a1", _user("back"))
        rows = await _rows(client, thread)
        assert [(r["id"], r["parent_id"]) for r in rows] == [("a1", None), ("u1", "a1")]


OPAQUE_AUI = {
    "role": "assistant",
    "content": [{"type": "text", "text": "Hi"}, {"type": "tool-call", "toolCallId": "c1", "args": {"q": None}}],
    "status": {"type": "complete", "reason": "stop"},
    "metadata": {"unstable_state": None, "custom": {}, "steps": []},
    "createdAt": "2026-08-22T10:00:00.000Z",
}
OPAQUE_APP = {
    "parts": "not a UIMessage at all",
    "role": "tool",
    "id": "inner-id",
    "numbers": [0, -1, 1.5, 2**53 + 1, 2**70, 1e-7],
    "deep": {"a": {"b": {"c": [[], {}, [None, True, False]]}}},
    "text": 'ünïcödé ✓ 🎉 \u2028 \t \\ "quoted"',
    "": "empty key",
}


class TestOpaqueFormats:
    async def test_opaque_content_is_kept_verbatim(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        thread = await _thread(client)
        written = [
            await _append(client, thread, "x1", None, OPAQUE_AUI, "aui/v0"),
            await _append(client, thread, "x2", "x1", OPAQUE_APP, "my-app/v1"),
        ]
        assert _stored(await _rows(client, thread)) == written
        response = await client.get(f"/api/threads/{thread}/messages/x2")
        assert response.json()["content"] == OPAQUE_APP
        assert (await count_rows(store))["parts"] == 0

    async def test_opaque_messages_are_left_out_of_the_chat_view(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "x1", "u1", OPAQUE_AUI, "aui/v0")
        await _append(client, thread, "a1", "x1", _assistant("Hello"))
        await _append(client, thread, "x2", "a1", OPAQUE_APP, "my-app/v1")
        assert await _head(client, thread) == "x2"
        assert await _chat(client, thread) == [{"id": "u1", **_user("Hi")}, {"id": "a1", **_assistant("Hello")}]

    async def test_a_thread_of_only_opaque_messages_has_an_empty_chat_view(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "x1", None, OPAQUE_AUI, "aui/v0")
        assert await _chat(client, thread) == []

    async def test_filter_by_format(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "x1", "u1", OPAQUE_AUI, "aui/v0")
        await _append(client, thread, "a1", "u1", _assistant("Hello"), "ai-sdk/v5")
        await _append(client, thread, "x2", "x1", OPAQUE_AUI, "aui/v0")
        assert [r["id"] for r in await _rows(client, thread, format="aui/v0")] == ["x1", "x2"]
        assert [r["id"] for r in await _rows(client, thread, format="ai-sdk/v6")] == ["u1"]
        assert [r["id"] for r in await _rows(client, thread, format="ai-sdk/v5")] == ["a1"]
        assert await _rows(client, thread, format="unknown/v9") == []


class TestPaging:
    async def test_pages_cover_every_message_once_in_order(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        parent: str | None = None
        for i in range(7):
            await _append(client, thread, f"m{i}", parent, _user(f"{i}"))
            parent = f"m{i}" if i % 3 else None
        everything = await _rows(client, thread)
        for limit in (1, 2, 3, 7, 8):
            collected: list[dict[str, Any]] = []
            params: dict[str, Any] = {"limit": limit}
            for _ in range(20):
                response = await client.get(f"/api/threads/{thread}/messages", params=params)
                assert response.status_code == 200, response.text
                page = response.json()
                assert len(page) <= limit
                collected.extend(page)
                cursor = response.headers.get("x-next-cursor")
                if cursor is None:
                    break
                assert len(page) == limit
                params["after"] = cursor
            assert collected == everything, f"limit={limit}"

    async def test_without_limit_there_is_no_cursor(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        for i in range(3):
            await _append(client, thread, f"m{i}", None, _user(f"{i}"))
        response = await client.get(f"/api/threads/{thread}/messages")
        assert len(response.json()) == 3
        assert "x-next-cursor" not in response.headers

    async def test_paging_with_a_format_filter(self, client: httpx.AsyncClient) -> None:
        thread = await _thread(client)
        for i in range(6):
            fmt = "aui/v0" if i % 2 else "ai-sdk/v6"
            await _append(client, thread, f"m{i}", None, OPAQUE_AUI if i % 2 else _user(f"{i}"), fmt)
        first = await client.get(f"/api/threads/{thread}/messages", params={"limit": 2, "format": "aui/v0"})
        assert [r["id"] for r in first.json()] == ["m1", "m3"]
        second = await client.get(
            f"/api/threads/{thread}/messages",
            params={"limit": 2, "format": "aui/v0", "after": first.headers["x-next-cursor"]},
        )
        assert [r["id"] for r in second.json()] == ["m5"]
        assert "x-next-cursor" not in second.headers

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"after": "garbage"}, {"after": "a b"}])
    async def test_bad_paging_parameters_are_422(self, client: httpx.AsyncClient, params: dict[str, Any]) -> None:
        thread = await _thread(client)
        _error(await client.get(f"/api/threads/{thread}/messages", params=params), 422, "validation_error")

    @pytest.mark.parametrize(
        "value",
        [[10**30], [2**63], [True], [False], [1.5], ["1"], [None], [], [1, 2], {"seq": 1}],
        ids=repr,
    )
    async def test_a_cursor_the_listing_did_not_hand_out_is_422(
        self, plain_client: httpx.AsyncClient, value: Any
    ) -> None:
        """A forged ``after`` is the caller's mistake (422), never a server error."""
        thread = await _thread(plain_client)
        await _append(plain_client, thread, "m", None, _user("x"))
        cursor = base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
        response = await plain_client.get(f"/api/threads/{thread}/messages", params={"limit": 1, "after": cursor})
        error = _error(response, 422, "validation_error")
        assert [d["loc"] for d in error["details"]] == ["after"]


class TestMessageIdsArePerThread:
    async def test_the_same_id_in_two_threads(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        first, second = await _thread(client), await _thread(client)
        await _append(client, first, "u1", None, _user("first"))
        await _append(client, second, "u1", None, _user("second"))
        await _append(client, second, "a1", "u1", _assistant("reply"))
        assert [r["content"] for r in await _rows(client, first)] == [_user("first")]
        assert [r["content"] for r in await _rows(client, second)] == [_user("second"), _assistant("reply")]
        assert await count_rows(store) == {"threads": 2, "messages": 3, "parts": 1 + 1 + 2}

        await _append(client, first, "u1", None, _user("first, edited"))
        assert (await _rows(client, second))[0]["content"] == _user("second")

        assert (await client.delete(f"/api/threads/{first}/messages/u1")).status_code == 204
        assert [r["id"] for r in await _rows(client, second)] == ["u1", "a1"]
        assert [m["id"] for m in await _chat(client, second)] == ["u1", "a1"]

        assert (await client.delete(f"/api/threads/{second}")).status_code == 204
        assert await count_rows(store) == {"threads": 1, "messages": 0, "parts": 0}


class TestFirstMessageRace:
    async def test_a_first_message_creates_the_thread(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        await _append(client, "T1-from-initialize", "u1", None, _user("Hi"))
        threads = (await client.get("/api/threads")).json()
        assert [t["id"] for t in threads] == ["T1-from-initialize"]
        thread = threads[0]
        assert thread["status"] == "regular"
        assert thread["title"] is None
        assert thread["headId"] == "u1"
        assert (await client.get("/api/threads/T1-from-initialize")).json() == thread
        assert [m["id"] for m in await _chat(client, "T1-from-initialize")] == ["u1"]
        assert await count_rows(store) == {"threads": 1, "messages": 1, "parts": 1}

    async def test_concurrent_first_messages_create_one_thread(
        self, client: httpx.AsyncClient, store: ChatStore
    ) -> None:
        responses = await asyncio.gather(
            *(_post(client, "T-race", _row(f"u{i}", None, _user(f"{i}"))) for i in range(6))
        )
        assert [r.status_code for r in responses] == [204] * 6, [r.text for r in responses]
        assert [t["id"] for t in (await client.get("/api/threads")).json()] == ["T-race"]
        assert {r["id"] for r in await _rows(client, "T-race")} == {f"u{i}" for i in range(6)}
        assert await count_rows(store) == {"threads": 1, "messages": 6, "parts": 6}

    async def test_the_thread_is_the_callers(self, client: httpx.AsyncClient) -> None:
        await _append(client, "T2", "u1", None, _user("Hi"))
        await _append(client, "T2", "a1", "u1", _assistant("Hello"))
        assert [r["id"] for r in await _rows(client, "T2")] == ["u1", "a1"]
        response = await client.patch("/api/threads/T2", json={"title": "Named later"})
        assert response.status_code == 200
        assert response.json()["title"] == "Named later"
