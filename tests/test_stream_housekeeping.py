"""Nothing grows without bound and nothing hangs: finished chunk logs are trimmed, streams whose producer stopped
beating are closed, and a model that goes silent ends the turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.chat.streams import StreamHub
from chatkeep.errors import Conflict
from chatkeep.protocol.stream import encode_sse
from chatkeep.providers.base import ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.store.streams import StreamLog
from tests.conftest import system_transaction


async def _stream_with_chunks(store: ChatStore, log: StreamLog, stream_id: str, owner: str = "h:1:t") -> None:
    thread, _ = await store.create_thread("u1")
    await log.create(stream_id=stream_id, thread_id=thread.id, message_id="m1", owner=owner)
    await log.append([(stream_id, 0, '{"type":"start"}'), (stream_id, 1, '{"type":"finish"}')])


async def _count(store: ChatStore, table: str) -> int:
    async with system_transaction(store.engine) as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_finished_chunk_logs_are_trimmed_and_active_ones_kept(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    await _stream_with_chunks(store, log, "s-done")
    await _stream_with_chunks(store, log, "s-live")
    await log.finish("s-done", "done")
    assert await log.chunks("s-live", -1) == [(0, '{"type":"start"}'), (1, '{"type":"finish"}')]
    later = datetime.now(UTC) + timedelta(minutes=5)
    await log.trim(chunks_before=later, streams_before=datetime.now(UTC) - timedelta(days=1))
    assert await log.chunks("s-done", -1) == []
    assert len(await log.chunks("s-live", -1)) == 2
    await log.trim(chunks_before=later, streams_before=later)
    assert await log.get("s-done") is None
    assert await log.get("s-live") is not None


async def test_a_stream_without_heartbeat_is_interrupted(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    await _stream_with_chunks(store, log, "s1", owner="elsewhere:42:x")
    assert await log.interrupt_orphans(lambda owner: False) == []
    orphans = await log.interrupt_orphans(lambda owner: False, stale_before=datetime.now(UTC) + timedelta(seconds=1))
    assert [o.id for o in orphans] == ["s1"]
    info = await log.get("s1")
    assert info is not None and info.status == "interrupted"
    assert await log.interrupt_orphans(lambda owner: True) == []  # it happens once


async def test_stop_requests_reach_the_producer_through_the_log(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    await _stream_with_chunks(store, log, "s1")
    assert await log.append([], heartbeat=["s1"]) == set()
    await log.request_stop(["s1"])
    assert await log.append([], heartbeat=["s1"]) == {"s1"}


async def test_one_append_writes_chunks_heartbeats_and_ends_of_many_streams(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    for stream_id in ("s-a", "s-b", "s-c", "s-old"):
        await _stream_with_chunks(store, log, stream_id)
    await log.finish("s-old", "aborted")
    before = {s: await log.get(s) for s in ("s-a", "s-b", "s-c", "s-old")}
    await asyncio.sleep(0.01)
    stopped = await log.append(
        [("s-a", 2, '{"type":"text-start","id":"t"}'), ("s-a", 3, '{"type":"text-end","id":"t"}'), ("gone", 0, "{}")],
        heartbeat=["s-b"],
        watch=["s-a", "s-b", "never-was"],
        ends={"s-c": "done", "s-old": "error"},  # s-c is not watched: it ended and left the live streams
    )
    assert stopped == {"gone", "never-was"}
    after = {s: await log.get(s) for s in ("s-a", "s-b", "s-c", "s-old")}
    assert all(info is not None for info in after.values())
    a, b, c, old = (after[s] for s in ("s-a", "s-b", "s-c", "s-old"))
    assert a is not None and (a.chunk_count, a.status) == (4, "active")
    assert [seq for seq, _ in await log.chunks("s-a", -1)] == [0, 1, 2, 3]
    assert await log.chunks("gone", -1) == []
    assert b is not None and (b.chunk_count, b.status) == (2, "active")
    assert c is not None and (c.chunk_count, c.status) == (2, "done")
    assert old is not None and old.status == "aborted"  # an end leaves only an active stream
    for stream_id in ("s-a", "s-b", "s-c"):
        moved, was = after[stream_id], before[stream_id]
        assert moved is not None and was is not None and moved.updated_at > was.updated_at
    was_old = before["s-old"]
    assert was_old is not None and old.updated_at == was_old.updated_at


async def test_streams_that_end_together_share_a_flush(store: ChatStore, monkeypatch: pytest.MonkeyPatch) -> None:
    log = StreamLog(store.engine)
    hub = StreamHub(log)
    thread, _ = await store.create_thread("u1")
    streams = []
    for index in range(12):
        live, _row = hub.prepare(thread_id=thread.id, message_id=f"m{index}")
        await log.create(stream_id=live.id, thread_id=thread.id, message_id=f"m{index}", owner=hub.owner)
        hub.adopt(live)
        hub.emit(live, encode_sse({"type": "start", "messageId": f"m{index}"}))
        streams.append(live)
    appends: list[dict[str, str]] = []
    append = log.append

    async def counted(*args: Any, **kwargs: Any) -> Any:
        appends.append(dict(kwargs.get("ends") or {}))
        return await append(*args, **kwargs)

    monkeypatch.setattr(log, "append", counted)
    await asyncio.gather(*(hub.finish(live, "done") for live in streams))
    # The first end's flush is under way when the others come: they all go in the next one, not one each.
    assert len(appends) <= 2
    assert {stream_id for ends in appends for stream_id in ends} == {live.id for live in streams}
    for live in streams:
        info = await log.get(live.id)
        assert info is not None and (info.status, info.chunk_count) == ("done", 1)
        assert live.done
    await hub.close()


async def test_an_append_that_repeats_a_chunk_writes_nothing(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    await _stream_with_chunks(store, log, "s1")
    with pytest.raises(Conflict):
        await log.append([("s1", 2, '{"type":"start-step"}'), ("s1", 1, '{"type":"finish"}')], ends={"s1": "done"})
    info = await log.get("s1")
    assert info is not None and (info.chunk_count, info.status) == (2, "active")
    assert len(await log.chunks("s1", -1)) == 2


async def test_a_silent_model_ends_the_turn(store: ChatStore) -> None:
    async def silent(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield "thinking about it"
        await asyncio.sleep(30)
        yield "never"

    service = ChatService(store, FunctionModel(silent), model_timeout=0.3)
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=10) as client:
        response = await client.post("/api/chat", json={"id": "t1", "messages": [user]})
        assert '"type":"error"' in response.text and "stopped responding" in response.text
        rows = (await client.get("/api/threads/t1/messages")).json()
    assert rows[1]["status"] == "error"
    assert rows[1]["content"]["parts"][1] == {"type": "text", "text": "thinking about it", "state": "done"}
    assert await _count(store, "streams") == 1
    await service.close()


async def test_the_model_timeout_does_not_time_what_follows_the_models_stream(store: ChatStore) -> None:
    # The idle timeout watches the model only: a tool slower than it, after the model's step ended, and the next
    # step, run to their end.
    from chatkeep.providers.base import ToolCall, ToolResultContent
    from chatkeep.tools import ToolRegistry, tool

    @tool
    async def slow_lookup(q: str) -> str:
        await asyncio.sleep(0.6)
        return f"found {q}"

    async def agent(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        answered = [c for m in request.messages for c in m.content if isinstance(c, ToolResultContent)]
        if not answered:
            yield ToolCall("c1", "slow_lookup", {"q": "x"})
        else:
            yield f"The tool said: {answered[0].output}"

    service = ChatService(store, FunctionModel(agent), tools=ToolRegistry([slow_lookup]), model_timeout=0.3)
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=10) as client:
        response = await client.post("/api/chat", json={"id": "t1", "messages": [user]})
        assert "stopped responding" not in response.text
        await asyncio.sleep(0.5)  # past another model timeout: nothing left running may be cancelled by it
        rows = (await client.get("/api/threads/t1/messages")).json()
    reply = rows[1]
    assert reply["status"] == "complete"
    parts = reply["content"]["parts"]
    assert [p["type"] for p in parts if p["type"] != "step-start"] == ["tool-slow_lookup", "text"]
    assert parts[-1]["text"] == "The tool said: found x"
    await service.close()


async def test_a_tool_call_cut_short_gets_an_error_result(store: ChatStore) -> None:
    from chatkeep.providers.base import ToolCall, ToolInputStart

    async def agent(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield ToolCall("c1", "search", {"q": "x"}, provider_executed=True)  # the agent's own tool, running…
        yield ToolInputStart("c2", "search")  # …and a second call whose input never completes
        await asyncio.sleep(30)

    service = ChatService(store, FunctionModel(agent), model_timeout=0.3)
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=10) as client:
        await client.post("/api/chat", json={"id": "t1", "messages": [user]})
        reply = (await client.get("/api/threads/t1/messages")).json()[1]["content"]
    tools = [p for p in reply["parts"] if p["type"] == "tool-search"]
    assert [(p["toolCallId"], p["state"]) for p in tools] == [("c1", "output-error"), ("c2", "output-error")]
    assert tools[0]["errorText"] == "The tool call did not finish: the model failed."
    await service.close()


async def test_deleting_a_thread_mid_reply_does_not_block_other_streams(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    await _stream_with_chunks(store, log, "s-kept")
    doomed, _ = await store.create_thread("u2")
    await log.create(stream_id="s-doomed", thread_id=doomed.id, message_id="m1", owner="h:1:t")
    await store.delete_thread("u2", doomed.id)  # cascades to its stream row
    stopped = await log.append([("s-kept", 2, '{"type":"text-start","id":"t"}'), ("s-doomed", 0, '{"type":"start"}')])
    assert stopped == {"s-doomed"}  # its producer is told to stop
    assert [seq for seq, _ in await log.chunks("s-kept", -1)] == [0, 1, 2]
    info = await log.get("s-kept")
    assert info is not None and info.chunk_count == 3


async def test_deleting_the_thread_of_a_running_reply_through_the_api(store: ChatStore) -> None:
    release = asyncio.Event()

    async def slow(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield "partial"
        await release.wait()
        yield " more"

    service = ChatService(store, FunctionModel(slow))
    service.hub.flush_interval = 0.05
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    doomed = await service.start("local", "doomed", messages=[user])
    kept = await service.start("local", "kept", messages=[{**user, "id": "u9"}])
    await asyncio.sleep(0.2)
    await store.delete_thread("local", "doomed")
    await asyncio.sleep(0.3)  # a flush runs: the doomed stream is told to stop, the other one goes on
    assert doomed.stream.done or doomed.stream.stop_reason == "stop"
    release.set()
    frames = [frame async for frame in kept.sse()]
    assert frames[-1] == b"data: [DONE]\n\n"
    reply = (await store.list_messages("local", "kept")).items[1]
    assert reply.status is None and reply.content["parts"][1]["text"] == "partial more"
    await service.close()


def test_which_producers_are_known_to_be_dead() -> None:
    import os

    from chatkeep.chat.streams import make_owner_id, owner_is_dead

    me = make_owner_id()
    host = me.split(":")[0]
    assert not owner_is_dead(me, me=me)
    assert owner_is_dead(f"{host}:{os.getpid()}:earlier-life", me=me)  # this pid, before a restart
    assert owner_is_dead(f"{host}:999999999:x", me=me)  # no such process on this host
    assert not owner_is_dead(f"{host}:1:x", me=me)  # a live process on this host
    assert not owner_is_dead("another-host:123:x", me=me)  # other hosts: their heartbeat decides
    assert not owner_is_dead("garbage", me=me)


def _chunks(stream_id: str, *chunks: str) -> list[tuple[str, int, str]]:
    return [(stream_id, seq, chunk) for seq, chunk in enumerate(chunks)]


_TEXT_SO_FAR = (
    '{"type":"start","messageId":"r1"}',
    '{"type":"start-step"}',
    '{"type":"text-start","id":"t"}',
    '{"type":"text-delta","id":"t","delta":"half a "}',
    '{"type":"text-delta","id":"t","delta":"reply"}',
)


async def test_a_dead_producers_reply_is_rebuilt_from_its_chunks(store: ChatStore) -> None:
    """The chunk log is the checkpoint: the reply goes where the stream says, with every part closed."""
    log = StreamLog(store.engine)
    thread, _ = await store.create_thread("u1")
    prompt = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}
    await store.upsert_message("u1", thread.id, message_id="q1", parent_id=None, content=prompt)
    await log.create(stream_id="s1", thread_id=thread.id, message_id="r1", owner="gone:1:x", parent_id="q1")
    await log.append(_chunks("s1", *_TEXT_SO_FAR))
    assert [o.id for o in await log.interrupt_orphans(lambda owner: True)] == ["s1"]
    reply = await store.get_message("u1", thread.id, "r1")
    assert (reply.parent_id, reply.status) == ("q1", "interrupted")
    assert reply.content == {
        "role": "assistant",
        "parts": [{"type": "step-start"}, {"type": "text", "text": "half a reply", "state": "done"}],
    }
    assert (await store.get_thread("u1", thread.id)).head_id == "r1"


async def test_a_continued_reply_is_rebuilt_onto_the_stored_message(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    thread, _ = await store.create_thread("u1")
    earlier = {"role": "assistant", "parts": [{"type": "text", "text": "before", "state": "done"}]}
    await store.upsert_message("u1", thread.id, message_id="r1", parent_id=None, content=earlier)
    await log.create(stream_id="s1", thread_id=thread.id, message_id="r1", owner="gone:1:x", parent_id=None)
    await log.append(_chunks("s1", *_TEXT_SO_FAR))
    await log.interrupt_orphans(lambda owner: True)
    reply = await store.get_message("u1", thread.id, "r1")
    assert reply.status == "interrupted"
    assert [p.get("text") for p in reply.content["parts"]] == ["before", None, "half a reply"]


async def test_a_reply_stored_in_full_before_its_producer_died_is_left_alone(store: ChatStore) -> None:
    log = StreamLog(store.engine)
    thread, _ = await store.create_thread("u1")
    await log.create(stream_id="s1", thread_id=thread.id, message_id="r1", owner="gone:1:x", parent_id=None)
    await log.append(_chunks("s1", *_TEXT_SO_FAR))
    full = {"role": "assistant", "parts": [{"type": "text", "text": "the whole reply", "state": "done"}]}
    await store.upsert_message("u1", thread.id, message_id="r1", parent_id=None, content=full)
    await log.interrupt_orphans(lambda owner: True)
    reply = await store.get_message("u1", thread.id, "r1")
    assert (reply.status, reply.content) == (None, full)
    assert (await log.get("s1")) is not None
