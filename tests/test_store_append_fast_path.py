"""The one-round-trip append on PostgreSQL (``ChatStore._insert_new_pg``): it is really taken for a new message, it
stores exactly what the general path would, it hands every other case to the general path having written nothing,
and row-level security binds it (its caller is set by the first execution of its pipeline)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import true

from chatkeep.errors import InvalidInput, ParentNotFound, ThreadNotFound
from chatkeep.store import ChatStore, MessageWrite, NewStream
from chatkeep.store.streams import StreamLog
from tests.conftest import count_rows

EVERY_PART: dict[str, Any] = {
    "role": "assistant",
    "metadata": {"big": 123456789012345678901234567890, "nested": {"b": 1, "a": [None, True]}},
    "parts": [
        {"type": "step-start"},
        {"type": "reasoning", "text": "why \\ 'quoted' \"", "state": "done", "providerMetadata": {"x": {"y": 1}}},
        {"type": "text", "text": "héllo 😀 \n\t", "state": "done"},
        {"type": "tool-get_weather", "toolCallId": "c1", "state": "output-available", "input": None, "output": "sunny"},
        {"type": "dynamic-tool", "toolName": "t", "toolCallId": "c2", "state": "input-available", "input": {"q": 1}},
        {"type": "data-chart", "id": "d1", "data": None},
        {"type": "source-url", "sourceId": "s1", "url": "https://example.com", "title": "Example"},
        {"type": "file", "mediaType": "text/plain", "url": "data:text/plain;base64,aGk=", "filename": "hi.txt"},
    ],
    "futureKey": {"kept": [1, 2.5, "three"]},
}


def _text(value: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": value}]}


@pytest.fixture
def general_path_calls(backend: str, store: ChatStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if backend != "postgresql":
        pytest.skip("the one-round-trip append is PostgreSQL's")
    calls: list[str] = []
    general = store._upsert

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[3])  # the message id
        return await general(*args, **kwargs)

    monkeypatch.setattr(store, "_upsert", counted)
    return calls


async def test_a_new_message_takes_it_and_reads_back_exactly(store: ChatStore, general_path_calls: list[str]) -> None:
    thread, _ = await store.create_thread("u1")
    first = await store.upsert_message("u1", thread.id, message_id="q", parent_id=None, content=_text("hi"))
    stored = await store.upsert_message(
        "u1", thread.id, message_id="a", parent_id="q", content=EVERY_PART, status="interrupted"
    )
    assert general_path_calls == []
    assert (first.seq, stored.seq, stored.parent_id, stored.status) == (1, 2, "q", "interrupted")
    assert stored.created_at == stored.updated_at
    read = (await store.list_messages("u1", thread.id, include_streaming=True)).items
    assert [(m.id, m.parent_id, m.seq, m.status) for m in read] == [("q", None, 1, None), ("a", "q", 2, "interrupted")]
    assert read[1].content == EVERY_PART
    assert list(read[1].content) == list(EVERY_PART)  # key order too
    assert (await store.get_thread("u1", thread.id)).head_id == "a"


async def test_opaque_formats_take_it_too(store: ChatStore, general_path_calls: list[str]) -> None:
    thread, _ = await store.create_thread("u1")
    content = {"role": "user", "content": [{"type": "text", "text": "x"}], "n": 10**30}
    await store.upsert_message("u1", thread.id, message_id="o", parent_id=None, content=content, format="aui/v0")
    assert general_path_calls == []
    assert (await store.get_message("u1", thread.id, "o")).content == content


async def test_every_other_case_goes_to_the_general_path(store: ChatStore, general_path_calls: list[str]) -> None:
    thread, _ = await store.create_thread("u1")
    await store.upsert_message("u1", thread.id, message_id="q", parent_id=None, content=_text("v1"))
    counts = await count_rows(store)
    # an existing id: replaced in place, keeping its seq; the head does not move
    await store.upsert_message("u1", thread.id, message_id="r", parent_id="q", content=_text("r"))
    replaced = await store.upsert_message("u1", thread.id, message_id="q", parent_id=None, content=_text("v2"))
    assert general_path_calls == ["q"]
    assert replaced.seq == 1
    assert (await store.get_message("u1", thread.id, "q")).content == _text("v2")
    assert (await store.get_thread("u1", thread.id)).head_id == "r"
    # a parent that is not in the thread, or the message itself
    for parent in ("missing", "new"):
        with pytest.raises(ParentNotFound):
            await store.upsert_message("u1", thread.id, message_id="new", parent_id=parent, content=_text("x"))
    # a thread that does not exist; then one created on the way, which takes it (a root message)
    with pytest.raises(ThreadNotFound):
        await store.upsert_message("u1", "no-such-thread", message_id="x", parent_id=None, content=_text("x"))
    await store.upsert_message(
        "u1", "made-on-the-way", message_id="x", parent_id=None, content=_text("x"), create_thread=True
    )
    assert general_path_calls == ["q", "new", "new", "x"]
    after = await count_rows(store)
    assert after["messages"] == counts["messages"] + 2  # "r" and "x": nothing else was written
    # the next new message still takes it, with the next seq
    nxt = await store.upsert_message("u1", thread.id, message_id="s", parent_id="r", content=_text("s"))
    assert nxt.seq == 3
    assert general_path_calls == ["q", "new", "new", "x"]


async def test_row_level_security_binds_it(
    store: ChatStore, general_path_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the user filter gone (as in tests/test_isolation.py), only row-level security keeps Bob out: the
    statement's caller must be set before it runs."""
    thread, _ = await store.create_thread("alice")
    await store.upsert_message("alice", thread.id, message_id="a1", parent_id=None, content=_text("secret"))
    monkeypatch.setattr("chatkeep.store.chat_store._owned", lambda user_id: true())
    counts = await count_rows(store)
    with pytest.raises(ThreadNotFound):
        await store.upsert_message("bob", thread.id, message_id="b1", parent_id="a1", content=_text("hi"))
    assert general_path_calls == ["b1"]  # the fast path saw no thread of Bob's
    assert await count_rows(store) == counts
    # and Alice still writes through it with the filter gone
    await store.upsert_message("alice", thread.id, message_id="a2", parent_id="a1", content=_text("more"))
    assert general_path_calls == ["b1"]


async def test_a_turns_prompt_and_its_stream_take_it_together(store: ChatStore, general_path_calls: list[str]) -> None:
    thread, _ = await store.create_thread("u1")
    await store.upsert_message("u1", thread.id, message_id="q1", parent_id=None, content=_text("hi"))
    stream = NewStream("s1", "r1", "host:1:x", parent_id="q2")
    await store.write_messages("u1", thread.id, [MessageWrite("q2", "q1", _text("again"))], stream=stream)
    assert general_path_calls == []
    log = StreamLog(store.engine)
    info = await log.get("s1")
    assert info is not None
    assert (info.thread_id, info.message_id, info.status, info.owner, info.chunk_count) == (
        thread.id, "r1", "active", "host:1:x", 0,
    )  # fmt: skip
    assert [s.id for s in await log.active("u1", thread.id)] == ["s1"]
    read = (await store.list_messages("u1", thread.id)).items
    assert [(m.id, m.parent_id, m.seq) for m in read] == [("q1", None, 1), ("q2", "q1", 2)]


async def test_a_turn_it_cannot_take_registers_no_stream_twice(store: ChatStore, general_path_calls: list[str]) -> None:
    # The prompt is stored already (a regenerate that resends it): the fast path writes nothing, not even the
    # stream, and the general path writes the stream once.
    thread, _ = await store.create_thread("u1")
    await store.upsert_message("u1", thread.id, message_id="q1", parent_id=None, content=_text("hi"))
    stream = NewStream("s1", "r1", "host:1:x", parent_id="q1")
    await store.write_messages("u1", thread.id, [MessageWrite("q1", None, _text("hi"))], stream=stream)
    assert general_path_calls == ["q1"]
    assert [s.id for s in await StreamLog(store.engine).active("u1", thread.id)] == ["s1"]


async def test_a_new_threads_first_turn_takes_it_and_creates_the_thread(
    store: ChatStore, general_path_calls: list[str]
) -> None:
    stream = NewStream("s1", "r1", "host:1:x", parent_id="q1")
    await store.write_messages("u1", "fresh", [MessageWrite("q1", None, _text("hi"))], stream=stream)
    assert general_path_calls == []
    thread = await store.get_thread("u1", "fresh")
    assert (thread.head_id, thread.status, thread.title, thread.local_id, thread.custom) == (
        "q1", "regular", None, None, None,
    )  # fmt: skip
    assert [m.id for m in (await store.list_messages("u1", "fresh")).items] == ["q1"]
    assert [s.id for s in await StreamLog(store.engine).active("u1", "fresh")] == ["s1"]
    # Another user's thread id is not taken over: nothing is written, and the general path says it is not found.
    with pytest.raises(ThreadNotFound):
        await store.write_messages("u2", "fresh", [MessageWrite("x1", None, _text("mine?"))])
    assert general_path_calls == ["x1"]
    assert [m.id for m in (await store.list_messages("u1", "fresh")).items] == ["q1"]


async def test_a_first_message_that_fails_leaves_no_thread(store: ChatStore, general_path_calls: list[str]) -> None:
    # An id longer than its column passes the store's checks (the routes refuse it first) and fails in the
    # database, after the thread was created in the same pipeline: the thread goes with it.
    with pytest.raises(InvalidInput):
        await store.write_messages("u1", "fresh", [MessageWrite("q" * 300, None, _text("hi"))])
    with pytest.raises(ThreadNotFound):
        await store.get_thread("u1", "fresh")
