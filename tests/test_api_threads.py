"""``/api/threads``: what assistant-ui's ``RemoteThreadListAdapter`` relies on.

Pins down creation (any JSON body, idempotent on ``localId`` per user), fetching, the list order (most recently
updated first), keyset pagination that hands out every thread exactly once, the ``status`` filter, ``PATCH`` of
each field, ``DELETE`` removing every row of the thread, and timestamps written like ``Date#toISOString()``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import text

from chatkeep.store import ChatStore
from tests.conftest import ClientFactory, count_rows, system_transaction

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
THREAD_KEYS = {"id", "title", "status", "custom", "createdAt", "updatedAt", "headId"}


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


def _assistant(*texts: str) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "step-start"}, *({"type": "text", "text": t} for t in texts)]}


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = cast(dict[str, Any], body["error"])
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


async def _create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/threads", json=body)
    assert response.status_code == 201, response.text
    return cast(dict[str, Any], response.json())


async def _append(
    client: httpx.AsyncClient, thread_id: str, message_id: str, parent_id: str | None, content: dict[str, Any]
) -> None:
    row = {"id": message_id, "parent_id": parent_id, "format": "ai-sdk/v6", "content": content}
    response = await client.post(f"/api/threads/{thread_id}/messages", json=row)
    assert response.status_code == 204, response.text


async def _list(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/threads", params=params)
    assert response.status_code == 200, response.text
    return cast(list[dict[str, Any]], response.json())


async def _walk(client: httpx.AsyncClient, **params: Any) -> tuple[list[str], int]:
    """Every thread id, page by page through ``X-Next-Cursor``; also how many pages it took."""
    ids: list[str] = []
    pages = 0
    query = dict(params)
    while True:
        response = await client.get("/api/threads", params=query)
        assert response.status_code == 200, response.text
        pages += 1
        page = response.json()
        assert len(page) <= int(params["limit"])
        ids.extend(t["id"] for t in page)
        cursor = response.headers.get("x-next-cursor")
        if cursor is None:
            assert "link" not in response.headers
            return ids, pages
        assert len(page) == int(params["limit"])
        assert f"after={cursor}" in response.headers["link"]
        query["after"] = cursor
        assert pages < 100, "the cursor never ends"


class TestCreate:
    async def test_without_a_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/threads")
        assert response.status_code == 201, response.text
        thread = response.json()
        assert set(thread) == THREAD_KEYS
        assert isinstance(thread["id"], str) and thread["id"]
        assert thread["title"] is None
        assert thread["status"] == "regular"
        assert thread["custom"] is None
        assert thread["headId"] is None
        assert thread["createdAt"] == thread["updatedAt"]

    async def test_with_an_empty_object(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client)
        assert thread["title"] is None

    async def test_json_labelled_text_plain(self, client: httpx.AsyncClient) -> None:
        """What a ``fetch`` with a string body and no headers sends."""
        response = await client.post(
            "/api/threads", content=b'{"title": "Plain", "custom": {"k": 1}}', headers={"content-type": "text/plain"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["title"] == "Plain"
        assert response.json()["custom"] == {"k": 1}

    async def test_json_without_a_content_type(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/threads", content=b'{"title": "Bare"}')
        assert "content-type" not in response.request.headers
        assert response.status_code == 201, response.text
        assert response.json()["title"] == "Bare"

    async def test_title_and_custom_are_kept(self, client: httpx.AsyncClient) -> None:
        custom = {"tags": ["a", "b"], "nested": {"n": None, "x": 1.5, "flag": True}, "emoji": "👋"}
        thread = await _create(client, title="Trip to Oslo", custom=custom)
        assert thread["title"] == "Trip to Oslo"
        assert thread["custom"] == custom
        fetched = (await client.get(f"/api/threads/{thread['id']}")).json()
        assert fetched == thread

    async def test_a_json_null_body_is_an_empty_one(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/threads", content=b"null", headers={"content-type": "application/json"})
        assert response.status_code == 201, response.text
        assert response.json()["title"] is None

    async def test_empty_title_and_custom_are_not_null(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client, title="", custom={})
        assert (thread["title"], thread["custom"]) == ("", {})
        fetched = (await client.get(f"/api/threads/{thread['id']}")).json()
        assert (fetched["title"], fetched["custom"]) == ("", {})

    async def test_each_creation_is_a_new_thread(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        first = await _create(client)
        second = await _create(client)
        assert first["id"] != second["id"]
        assert (await count_rows(store))["threads"] == 2

    async def test_local_id_is_idempotent(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        first = await client.post("/api/threads", json={"localId": "__LOCALID_k3J9aQ2", "title": "First"})
        assert first.status_code == 201, first.text
        again = await client.post("/api/threads", json={"localId": "__LOCALID_k3J9aQ2", "title": "Second"})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.json()["title"] == "First"
        assert (await count_rows(store))["threads"] == 1
        other = await client.post("/api/threads", json={"localId": "__LOCALID_other00"})
        assert other.status_code == 201
        assert other.json()["id"] != first.json()["id"]

    async def test_local_id_is_idempotent_under_concurrency(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        """assistant-ui's ``initialize`` may be retried while the first call is in flight."""
        responses = await asyncio.gather(
            *(client.post("/api/threads", json={"localId": "__LOCALID_racerac"}) for _ in range(10))
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201], [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert (await count_rows(store))["threads"] == 1

    async def test_two_users_may_use_the_same_local_id(self, make_client: ClientFactory, store: ChatStore) -> None:
        alice, bob = await make_client("alice"), await make_client("bob")
        from_alice = await alice.post("/api/threads", json={"localId": "__LOCALID_shared1", "title": "alice"})
        from_bob = await bob.post("/api/threads", json={"localId": "__LOCALID_shared1", "title": "bob"})
        assert from_alice.status_code == 201, from_alice.text
        assert from_bob.status_code == 201, from_bob.text
        assert from_alice.json()["id"] != from_bob.json()["id"]
        assert from_bob.json()["title"] == "bob"
        again = await alice.post("/api/threads", json={"localId": "__LOCALID_shared1"})
        assert again.status_code == 200
        assert again.json() == from_alice.json()
        assert (await count_rows(store))["threads"] == 2
        assert [t["id"] for t in await _list(bob)] == [from_bob.json()["id"]]


class TestGet:
    async def test_returns_the_created_thread(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client, title="Hello")
        response = await client.get(f"/api/threads/{thread['id']}")
        assert response.status_code == 200
        assert response.json() == thread

    async def test_missing_thread_is_404(self, client: httpx.AsyncClient) -> None:
        error = _error(await client.get("/api/threads/no-such-thread"), 404, "thread_not_found")
        assert "no-such-thread" in error["message"]

    async def test_head_follows_the_last_written_message(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client)
        await _append(client, thread["id"], "u1", None, _user("Hi"))
        await _append(client, thread["id"], "a1", "u1", _assistant("Hello"))
        assert (await client.get(f"/api/threads/{thread['id']}")).json()["headId"] == "a1"


class TestTimestamps:
    async def test_thread_and_message_timestamps_look_like_to_iso_string(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client)
        assert ISO_MS.match(thread["createdAt"]), thread["createdAt"]
        assert ISO_MS.match(thread["updatedAt"]), thread["updatedAt"]
        await _append(client, thread["id"], "u1", None, _user("Hi"))
        fetched = (await client.get(f"/api/threads/{thread['id']}")).json()
        assert ISO_MS.match(fetched["createdAt"]) and ISO_MS.match(fetched["updatedAt"])
        assert fetched["createdAt"] == thread["createdAt"]
        assert fetched["updatedAt"] >= thread["updatedAt"]
        for listed in await _list(client):
            assert ISO_MS.match(listed["createdAt"]) and ISO_MS.match(listed["updatedAt"])
        rows = (await client.get(f"/api/threads/{thread['id']}/messages")).json()
        assert ISO_MS.match(rows[0]["created_at"]), rows[0]["created_at"]

    async def test_timestamps_are_utc_and_current(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client)
        created = datetime.strptime(thread["createdAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)


class TestListOrder:
    async def test_newest_first(self, client: httpx.AsyncClient) -> None:
        created = [await _create(client, title=f"t{i}") for i in range(4)]
        assert [t["id"] for t in await _list(client)] == [t["id"] for t in reversed(created)]

    async def test_an_update_moves_a_thread_to_the_front(self, client: httpx.AsyncClient) -> None:
        t1, t2, t3 = [(await _create(client, title=f"t{i}"))["id"] for i in (1, 2, 3)]
        assert [t["id"] for t in await _list(client)] == [t3, t2, t1]

        renamed = await client.patch(f"/api/threads/{t1}", json={"title": "renamed"})
        assert renamed.status_code == 200
        assert [t["id"] for t in await _list(client)] == [t1, t3, t2]

        await _append(client, t2, "u1", None, _user("Hi"))
        assert [t["id"] for t in await _list(client)] == [t2, t1, t3]

        archived = await client.patch(f"/api/threads/{t3}", json={"status": "archived"})
        assert archived.status_code == 200
        listed = await _list(client)
        assert [t["id"] for t in listed] == [t3, t2, t1]
        assert [t["status"] for t in listed] == ["archived", "regular", "regular"]

    async def test_updated_at_is_non_decreasing_down_the_list(self, client: httpx.AsyncClient) -> None:
        for i in range(5):
            thread = await _create(client)
            if i % 2:
                await _append(client, thread["id"], "m", None, _user("x"))
        stamps = [t["updatedAt"] for t in await _list(client)]
        assert stamps == sorted(stamps, reverse=True)

    async def test_the_list_holds_both_statuses_by_default(self, client: httpx.AsyncClient) -> None:
        regular = await _create(client)
        archived = await _create(client)
        await client.patch(f"/api/threads/{archived['id']}", json={"status": "archived"})
        assert {t["id"] for t in await _list(client)} == {regular["id"], archived["id"]}

    async def test_empty_list(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/threads")
        assert response.status_code == 200
        assert response.json() == []
        assert "x-next-cursor" not in response.headers


class TestPagination:
    @pytest.mark.parametrize(("total", "limit", "pages"), [(7, 3, 3), (6, 3, 2), (5, 1, 5), (4, 10, 1), (1, 1, 1)])
    async def test_every_thread_exactly_once(
        self, client: httpx.AsyncClient, total: int, limit: int, pages: int
    ) -> None:
        for i in range(total):
            await _create(client, title=f"t{i}")
        everything = [t["id"] for t in await _list(client)]
        assert len(everything) == total
        walked, page_count = await _walk(client, limit=limit)
        assert walked == everything
        assert len(set(walked)) == total
        assert page_count == pages

    async def test_a_thread_updated_while_paging_is_not_repeated(self, client: httpx.AsyncClient) -> None:
        ids = [(await _create(client))["id"] for _ in range(6)]
        first = await client.get("/api/threads", params={"limit": 2})
        seen = [t["id"] for t in first.json()]
        assert seen == ids[::-1][:2]
        await client.patch(f"/api/threads/{seen[0]}", json={"title": "bumped"})
        rest, _ = await _walk(client, limit=2, after=first.headers["x-next-cursor"])
        assert seen + rest == ids[::-1]

    async def test_threads_created_in_the_same_instant_are_all_listed(
        self, client: httpx.AsyncClient, store: ChatStore
    ) -> None:
        """Ties on ``updated_at`` are broken by id, so no thread is skipped or repeated across pages."""
        for _ in range(5):
            await _create(client)
        when: object = datetime(2026, 8, 22, 10, 0, tzinfo=UTC)
        if store.dialect == "sqlite":  # the column's own storage format: naive UTC text
            when = "2026-08-22 10:00:00.000000"
        async with system_transaction(store.engine) as conn:
            await conn.execute(text("UPDATE threads SET updated_at = :when"), {"when": when})
        everything = [t["id"] for t in await _list(client)]
        assert len(set(everything)) == 5
        walked, _ = await _walk(client, limit=2)
        assert walked == everything

    async def test_pagination_with_a_status_filter(self, client: httpx.AsyncClient) -> None:
        ids = [(await _create(client))["id"] for _ in range(5)]
        for archived in ids[1::2]:
            await client.patch(f"/api/threads/{archived}", json={"status": "archived"})
        regular = [t["id"] for t in await _list(client, status="regular")]
        assert set(regular) == set(ids[0::2])
        walked, _ = await _walk(client, limit=1, status="regular")
        assert walked == regular
        first = await client.get("/api/threads", params={"limit": 1, "status": "regular"})
        assert "status=regular" in first.headers["link"]

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"after": "not a cursor!"}])
    async def test_bad_paging_parameters_are_422(self, client: httpx.AsyncClient, params: dict[str, Any]) -> None:
        _error(await client.get("/api/threads", params=params), 422, "validation_error")

    @pytest.mark.parametrize("cursor", ["garbage", "W10", "WzEsMl0", "WyJub3QgYSBkYXRlIiwiaWQiXQ"])
    async def test_a_cursor_the_listing_did_not_hand_out_is_422(self, client: httpx.AsyncClient, cursor: str) -> None:
        error = _error(await client.get("/api/threads", params={"after": cursor}), 422, "validation_error")
        assert error["details"][0]["loc"] == "after"


class TestStatusFilter:
    async def test_filter_by_status(self, client: httpx.AsyncClient) -> None:
        r1, a1, r2 = [(await _create(client))["id"] for _ in range(3)]
        await client.patch(f"/api/threads/{a1}", json={"status": "archived"})
        assert [t["id"] for t in await _list(client, status="archived")] == [a1]
        assert [t["id"] for t in await _list(client, status="regular")] == [r2, r1]
        assert {t["id"] for t in await _list(client)} == {r1, a1, r2}

    async def test_unarchive(self, client: httpx.AsyncClient) -> None:
        thread = (await _create(client))["id"]
        await client.patch(f"/api/threads/{thread}", json={"status": "archived"})
        await client.patch(f"/api/threads/{thread}", json={"status": "regular"})
        assert await _list(client, status="archived") == []
        assert [t["id"] for t in await _list(client, status="regular")] == [thread]

    async def test_unknown_status_is_422(self, client: httpx.AsyncClient) -> None:
        _error(await client.get("/api/threads", params={"status": "deleted"}), 422, "validation_error")


class TestPatch:
    async def test_rename(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client, title="Old", custom={"k": 1})
        response = await client.patch(f"/api/threads/{thread['id']}", json={"title": "New"})
        assert response.status_code == 200, response.text
        patched = response.json()
        assert patched["title"] == "New"
        assert {k: v for k, v in patched.items() if k not in ("title", "updatedAt")} == {
            k: v for k, v in thread.items() if k not in ("title", "updatedAt")
        }
        assert patched["updatedAt"] >= thread["updatedAt"]
        assert (await client.get(f"/api/threads/{thread['id']}")).json() == patched

    async def test_title_null_clears_the_title(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client, title="Old")
        response = await client.patch(f"/api/threads/{thread['id']}", json={"title": None})
        assert response.status_code == 200, response.text
        assert response.json()["title"] is None
        assert (await client.get(f"/api/threads/{thread['id']}")).json()["title"] is None

    async def test_omitted_fields_are_kept(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client, title="Keep", custom={"keep": True})
        response = await client.patch(f"/api/threads/{thread['id']}", json={"status": "archived"})
        assert response.status_code == 200
        assert response.json()["title"] == "Keep"
        assert response.json()["custom"] == {"keep": True}
        assert response.json()["status"] == "archived"
        empty = await client.patch(f"/api/threads/{thread['id']}", json={})
        assert empty.status_code == 200
        assert {k: v for k, v in empty.json().items() if k != "updatedAt"} == {
            k: v for k, v in response.json().items() if k != "updatedAt"
        }

    async def test_custom_is_replaced_not_merged(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client, custom={"a": 1, "b": {"c": 2}})
        response = await client.patch(f"/api/threads/{thread['id']}", json={"custom": {"b": {"d": 3}}})
        assert response.status_code == 200
        assert response.json()["custom"] == {"b": {"d": 3}}
        cleared = await client.patch(f"/api/threads/{thread['id']}", json={"custom": None})
        assert cleared.status_code == 200
        assert cleared.json()["custom"] is None
        assert (await client.get(f"/api/threads/{thread['id']}")).json()["custom"] is None

    async def test_status(self, client: httpx.AsyncClient) -> None:
        thread = await _create(client)
        archived = await client.patch(f"/api/threads/{thread['id']}", json={"status": "archived"})
        assert archived.json()["status"] == "archived"
        regular = await client.patch(f"/api/threads/{thread['id']}", json={"status": "regular"})
        assert regular.json()["status"] == "regular"

    async def test_head_id_switches_to_a_message_of_the_thread(self, client: httpx.AsyncClient) -> None:
        thread = (await _create(client))["id"]
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, thread, "a1", "u1", _assistant("Hello"))
        await _append(client, thread, "a2", "u1", _assistant("Hey"))
        response = await client.patch(f"/api/threads/{thread}", json={"headId": "a1"})
        assert response.status_code == 200, response.text
        assert response.json()["headId"] == "a1"
        assert (await client.get(f"/api/threads/{thread}")).json()["headId"] == "a1"

    async def test_head_id_must_be_a_message_of_the_thread(self, client: httpx.AsyncClient) -> None:
        thread = (await _create(client))["id"]
        other = (await _create(client))["id"]
        await _append(client, thread, "u1", None, _user("Hi"))
        await _append(client, other, "elsewhere", None, _user("Hi"))
        before = (await client.get(f"/api/threads/{thread}")).json()
        for head in ("nope", "elsewhere"):
            error = _error(
                await client.patch(f"/api/threads/{thread}", json={"headId": head, "title": "ignored"}),
                404,
                "message_not_found",
            )
            assert head in error["message"]
        assert (await client.get(f"/api/threads/{thread}")).json() == before

    async def test_head_id_of_an_empty_thread_is_404(self, client: httpx.AsyncClient) -> None:
        thread = (await _create(client))["id"]
        _error(await client.patch(f"/api/threads/{thread}", json={"headId": "u1"}), 404, "message_not_found")

    @pytest.mark.parametrize(
        "body",
        [
            {"status": "deleted"},
            {"status": None},
            {"headId": None},
            {"headId": ""},
            {"title": 5},
            {"custom": [1, 2]},
            {"custom": "text"},
            {"name": "unknown key"},
        ],
        ids=repr,
    )
    async def test_invalid_patch_is_422_and_changes_nothing(
        self, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        thread = await _create(client, title="Same", custom={"same": 1})
        _error(await client.patch(f"/api/threads/{thread['id']}", json=body), 422, "validation_error")
        assert (await client.get(f"/api/threads/{thread['id']}")).json() == thread

    async def test_patch_of_a_missing_thread_is_404(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        _error(await client.patch("/api/threads/missing", json={"title": "x"}), 404, "thread_not_found")
        _error(await client.patch("/api/threads/missing", json={"headId": "u1"}), 404, "thread_not_found")
        assert (await count_rows(store))["threads"] == 0


class TestDelete:
    async def test_delete_removes_the_thread_and_every_row_of_it(
        self, client: httpx.AsyncClient, store: ChatStore
    ) -> None:
        kept = (await _create(client, title="kept"))["id"]
        await _append(client, kept, "u1", None, _user("Hi"))
        await _append(client, kept, "a1", "u1", _assistant("Hello", "again"))
        before = await count_rows(store)

        doomed = (await _create(client, title="doomed"))["id"]
        await _append(client, doomed, "u1", None, _user("Hi"))
        await _append(client, doomed, "a1", "u1", _assistant("one", "two", "three"))
        await _append(client, doomed, "a2", "u1", _assistant("regenerated"))
        opaque = {"id": "x1", "parent_id": "a2", "format": "aui/v0", "content": {"role": "user", "content": []}}
        assert (await client.post(f"/api/threads/{doomed}/messages", json=opaque)).status_code == 204
        assert (await count_rows(store))["parts"] > before["parts"]

        response = await client.delete(f"/api/threads/{doomed}")
        assert response.status_code == 204
        assert response.content == b""
        assert await count_rows(store) == before

        _error(await client.get(f"/api/threads/{doomed}"), 404, "thread_not_found")
        _error(await client.get(f"/api/threads/{doomed}/messages"), 404, "thread_not_found")
        _error(await client.get(f"/api/threads/{doomed}/messages/u1"), 404, "thread_not_found")
        _error(await client.get(f"/api/chat/{doomed}/messages"), 404, "thread_not_found")
        _error(await client.delete(f"/api/threads/{doomed}"), 404, "thread_not_found")
        assert [t["id"] for t in await _list(client)] == [kept]
        assert len((await client.get(f"/api/threads/{kept}/messages")).json()) == 2

    async def test_delete_of_a_missing_thread_is_404(self, client: httpx.AsyncClient) -> None:
        _error(await client.delete("/api/threads/missing"), 404, "thread_not_found")

    async def test_a_deleted_thread_id_can_be_used_again(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        """After a delete, a first message to the same id starts a fresh, empty thread."""
        thread = (await _create(client))["id"]
        await _append(client, thread, "u1", None, _user("old"))
        assert (await client.delete(f"/api/threads/{thread}")).status_code == 204
        await _append(client, thread, "u9", None, _user("new"))
        rows = (await client.get(f"/api/threads/{thread}/messages")).json()
        assert [r["id"] for r in rows] == ["u9"]
        assert await count_rows(store) == {"threads": 1, "messages": 1, "parts": 1}
