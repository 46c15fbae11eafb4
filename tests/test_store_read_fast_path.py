"""The one-round-trip read on PostgreSQL (``ChatStore._load_owned_pg``): every load of a thread's messages takes
it, it returns exactly what the general path (a read transaction, ``_load_owned``) returns for every kind of
condition, and row-level security binds it (its caller is set by the first execution of its pipeline)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import true

from chatkeep.errors import MessageNotFound, ThreadNotFound
from chatkeep.store import ChatStore
from chatkeep.store.chat_store import _Filter
from tests.test_store_append_fast_path import EVERY_PART


@pytest.fixture
def pg_store(backend: str, store: ChatStore, monkeypatch: pytest.MonkeyPatch) -> ChatStore:
    """The store, with its read transactions refused: on PostgreSQL loading messages must not need one."""
    if backend != "postgresql":
        pytest.skip("the one-round-trip read is PostgreSQL's")
    general = store._read

    def refused(caller: Any) -> Any:
        raise AssertionError("a read transaction was opened")

    monkeypatch.setattr(store, "_read", refused)
    store.general_read = general  # type: ignore[attr-defined]
    return store


def _text(value: str, role: str = "user") -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": value}]}


async def _general(store: ChatStore, user: str, thread_id: str, wanted: _Filter, limit: int | None = None) -> Any:
    async with store.general_read(user) as conn:  # type: ignore[attr-defined]
        return await store._load_owned(conn, user, thread_id, wanted.condition(), limit=limit)


async def test_loads_take_it_and_match_the_general_path(pg_store: ChatStore) -> None:
    store = pg_store
    thread, _ = await store.create_thread("alice")
    await store.upsert_message("alice", thread.id, message_id="q1", parent_id=None, content=_text("one"))
    await store.upsert_message("alice", thread.id, message_id="a1", parent_id="q1", content=EVERY_PART)
    await store.upsert_message("alice", thread.id, message_id="q2", parent_id="a1", content=_text("two"))
    await store.upsert_message(
        "alice", thread.id, message_id="o", parent_id="q2", content={"opaque": [1, 2]}, format="aui/v0"
    )
    await store.upsert_message(
        "alice", thread.id, message_id="s", parent_id="o", content=_text("so far", "assistant"), status="streaming"
    )
    await store.upsert_message("alice", thread.id, message_id="q1b", parent_id=None, content=_text("edited"))

    tree = await store.load_tree("alice", thread.id)
    assert [m.id for m in tree.messages] == ["q1", "a1", "q2", "o", "s", "q1b"]
    assert tree.head_id == "q1b"
    assert (tree.messages, tree.head_id) == await _general(store, "alice", thread.id, _Filter())
    assert tree.messages[1].content == EVERY_PART and list(tree.messages[1].content) == list(EVERY_PART)

    page = await store.list_messages("alice", thread.id, limit=2)
    assert [m.id for m in page.items] == ["q1", "a1"] and page.next_cursor is not None
    rest = await store.list_messages("alice", thread.id, limit=10, after=page.next_cursor)
    assert [m.id for m in rest.items] == ["q2", "o", "q1b"]  # the streaming reply is left out
    everything = await store.list_messages("alice", thread.id, include_streaming=True, format="ai-sdk/v6")
    assert [m.id for m in everything.items] == ["q1", "a1", "q2", "s", "q1b"]
    for wanted, limit in [
        (_Filter(after_seq=2), 2),
        (_Filter(message_id="a1"), None),
        (_Filter(format="aui/v0", exclude_streaming=True), 5),
        (_Filter(after_seq=1, format="ai-sdk/v6", exclude_streaming=True), None),
        (_Filter(message_id="s", exclude_streaming=True), 1),
        (_Filter(exclude_streaming=True), None),
    ]:
        fast = await store._read_owned("alice", thread.id, wanted, limit=limit)
        assert fast == await _general(store, "alice", thread.id, wanted, limit)
        assert fast[0] or wanted.message_id == "s"
    assert (await store.get_message("alice", thread.id, "a1")).content == EVERY_PART
    with pytest.raises(MessageNotFound):
        await store.get_message("alice", thread.id, "nope")

    empty, _ = await store.create_thread("alice")
    assert await store._read_owned("alice", empty.id, _Filter()) == ([], None)
    assert await store.active_branch("alice", thread.id) == [{"id": "q1b", **_text("edited")}]


async def test_someone_elses_thread_or_none_is_not_found_and_rls_binds_it(
    pg_store: ChatStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg_store
    thread, _ = await store.create_thread("alice")
    await store.upsert_message("alice", thread.id, message_id="q1", parent_id=None, content=_text("secret"))
    for user, thread_id in [("bob", thread.id), ("alice", "no-such-thread")]:
        with pytest.raises(ThreadNotFound):
            await store.load_tree(user, thread_id)
        with pytest.raises(ThreadNotFound):
            await store.list_messages(user, thread_id, limit=5)
    # Without the query's own user filter, row-level security still gives Bob nothing: the caller the pipeline's
    # first execution sets is his (the tests connect as a role bound by it: see test_isolation).
    monkeypatch.setattr("chatkeep.store.chat_store._owned", lambda user_id: true())
    with pytest.raises(ThreadNotFound):
        await store.load_tree("bob", thread.id)
    assert len((await store.load_tree("alice", thread.id)).messages) == 1
