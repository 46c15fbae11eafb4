"""Recovering replies never depends on what users did to their threads: a reply whose prompt was deleted (or
edited) while it was generated is still stored where the user can see it, each orphaned stream is recovered on its
own, and a server killed with such streams in the database starts again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.providers.base import ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel, last_user_text
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.store.streams import StreamLog
from tests._server import running_server
from tests.conftest import JWT_SECRET


def user(text: str, message_id: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def chunks_of(body: str) -> list[dict[str, Any] | str]:
    out: list[dict[str, Any] | str] = []
    for line in body.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append("[DONE]" if data == "[DONE]" else json.loads(data))
    return out


class TestTheLiveReply:
    async def test_whose_prompt_is_deleted_goes_where_the_prompts_children_go(self, store: ChatStore) -> None:
        """The repro of issue #12: a new prompt, deleted (204) while its reply is generated. The reply is stored
        under the prompt's parent, the stream ends normally, and nothing is left active for the sweep."""
        asked = asyncio.Event()
        release = asyncio.Event()

        async def model(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
            text = last_user_text(request)
            if text == "slow":
                asked.set()
                await release.wait()
            yield f"re: {text}"

        service = ChatService(store, FunctionModel(model))
        app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as client:
            first = chunks_of((await client.post("/api/chat", json={"id": "t1", "messages": [user("hi", "u1")]})).text)
            r1 = first[0]["messageId"] if isinstance(first[0], dict) else ""
            turn = asyncio.create_task(client.post("/api/chat", json={"id": "t1", "message": user("slow", "u2")}))
            await asyncio.wait_for(asked.wait(), 10)  # the prompt is stored, the model is answering
            assert (await client.delete("/api/threads/t1/messages/u2")).status_code == 204
            release.set()
            reply = chunks_of((await turn).text)
            assert not [c for c in reply if isinstance(c, dict) and c["type"] == "error"], reply
            assert reply[-2:] == [{"type": "finish"}, "[DONE]"]
            r2 = reply[0]["messageId"] if isinstance(reply[0], dict) else ""

            stored = {row["id"]: row for row in (await client.get("/api/threads/t1/messages")).json()}
            assert list(stored) == ["u1", r1, r2]
            assert (stored[r2]["parent_id"], stored[r2]["status"]) == (r1, "complete")
            assert stored[r2]["content"]["parts"][-1]["text"] == "re: slow"
            branch = (await client.get("/api/chat/t1/messages")).json()
            assert [m["id"] for m in branch] == ["u1", r1, r2]
            assert (await client.get("/api/chat/t1/stream")).status_code == 204
        assert await service.hub.log.interrupt_orphans(lambda owner: True) == []  # nothing left behind
        await service.close()


_HALF_A_REPLY = (
    '{"type":"start","messageId":"r1"}',
    '{"type":"start-step"}',
    '{"type":"text-start","id":"t"}',
    '{"type":"text-delta","id":"t","delta":"half a reply"}',
)


async def _orphan(
    store: ChatStore,
    log: StreamLog,
    user_id: str,
    stream_id: str,
    *,
    parent: str | None = "q1",
    continues: tuple[dict[str, Any], str] | None = None,
) -> str:
    """A thread of ``user_id`` with the prompt ``q1`` and a stream of the reply ``r1`` under ``parent``, whose
    producer is gone, with half a reply logged; the stream continues ``r1`` stored as ``continues`` (content,
    format), if given."""
    thread, _ = await store.create_thread(user_id)
    prompt = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}
    await store.upsert_message(user_id, thread.id, message_id="q1", parent_id=None, content=prompt)
    if continues is not None:
        content, format = continues
        await store.upsert_message(user_id, thread.id, message_id="r1", parent_id="q1", content=content, format=format)
    await log.create(stream_id=stream_id, thread_id=thread.id, message_id="r1", owner="gone:1:x", parent_id=parent)
    await log.append([(stream_id, seq, chunk) for seq, chunk in enumerate(_HALF_A_REPLY)])
    return thread.id


class TestTheSweep:
    async def test_a_reply_whose_prompt_was_deleted_is_rebuilt_under_the_prompts_parent(self, store: ChatStore) -> None:
        log = StreamLog(store.engine)
        thread = await _orphan(store, log, "alice", "s1")
        answer = {"role": "assistant", "parts": [{"type": "text", "text": "hello", "state": "done"}]}
        await store.upsert_message("alice", thread, message_id="a1", parent_id="q1", content=answer)
        prompt = {"role": "user", "parts": [{"type": "text", "text": "more"}]}
        await store.upsert_message("alice", thread, message_id="q2", parent_id="a1", content=prompt)
        await log.create(stream_id="s2", thread_id=thread, message_id="r2", owner="gone:1:x", parent_id="q2")
        await log.append([("s2", 0, '{"type":"start","messageId":"r2"}'), ("s2", 1, _HALF_A_REPLY[2])])
        await log.finish("s1", "done")
        await store.delete_message("alice", thread, "q2")
        assert [o.id for o in await log.interrupt_orphans(lambda owner: True)] == ["s2"]
        reply = await store.get_message("alice", thread, "r2")
        assert (reply.parent_id, reply.status) == ("a1", "interrupted")

    async def test_an_edited_prompts_reply_stays_with_the_version_it_answers(self, store: ChatStore) -> None:
        log = StreamLog(store.engine)
        thread = await _orphan(store, log, "alice", "s1")
        edited = {"role": "user", "parts": [{"type": "text", "text": "hi, edited"}]}
        _, old_id = await store.edit_message("alice", thread, message_id="q1", content=edited)
        await log.interrupt_orphans(lambda owner: True)
        reply = await store.get_message("alice", thread, "r1")
        assert (reply.parent_id, reply.status) == (old_id, "interrupted")

    async def test_each_stream_is_recovered_on_its_own(self, store: ChatStore) -> None:
        """One stream whose reply cannot be stored does not keep the others (another user's) from being
        recovered, and is not tried again; one whose parent is gone without a trace (left by an older version)
        still has its reply stored, as a root of the thread."""
        log = StreamLog(store.engine)
        lost_parent = await _orphan(store, log, "alice", "s-lost-parent", parent="deleted-long-ago")
        # a reply that continues a message the rebuild cannot read as a UIMessage
        poisoned = await _orphan(store, log, "mallory", "s-poisoned", continues=({"not": "a UIMessage"}, "mine/v1"))
        bob = await _orphan(store, log, "bob", "s-bob")

        recovered = await log.interrupt_orphans(lambda owner: True)
        assert sorted(o.id for o in recovered) == ["s-bob", "s-lost-parent"]
        reply = await store.get_message("bob", bob, "r1")
        assert (reply.parent_id, reply.status) == ("q1", "interrupted")
        assert reply.content["parts"][-1] == {"type": "text", "text": "half a reply", "state": "done"}
        orphaned = await store.get_message("alice", lost_parent, "r1")
        assert (orphaned.parent_id, orphaned.status) == (None, "interrupted")
        info = await log.get("s-poisoned")
        assert info is not None and info.status == "error"
        assert (await store.get_message("mallory", poisoned, "r1")).content == {"not": "a UIMessage"}
        assert await log.interrupt_orphans(lambda owner: True) == []


@pytest.fixture
def server_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'served.db'}" if backend == "sqlite" else create_pg_database()


def _client(user_id: str) -> httpx.AsyncClient:
    token = jwt.encode({"sub": user_id, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")
    return httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {token}"})


async def _read_deltas(lines: AsyncIterator[str], count: int) -> None:
    """Read the stream's lines until ``count`` text deltas have come."""
    seen = 0
    async for line in lines:
        seen += line.startswith('data: {"type":"text-delta"')
        if seen == count:
            return


async def test_a_server_killed_with_such_streams_starts_again(server_database_url: str) -> None:
    """Alice deletes her prompts while their replies are generated (one ends before the crash, one does not),
    Bob's reply is cut off by ``kill -9``. The restarted server starts, and every reply is stored."""
    env = {"CHATKEEP_DEMO_DELAY_MS": "20", "CHATKEEP_JWT_SECRET": JWT_SECRET}
    async with _client("alice") as alice, _client("bob") as bob:
        with running_server(server_database_url, env=env) as server:
            url = server.url
            body = {"id": "ended", "messages": [user("count to 40", "a1")]}
            async with alice.stream("POST", f"{url}/api/chat", json=body) as ended:
                lines = ended.aiter_lines()
                await _read_deltas(lines, 1)
                assert (await alice.delete(f"{url}/api/threads/ended/messages/a1")).status_code == 204
                ended_with = [line async for line in lines if line.startswith("data: ")][-2:]
            body = {"id": "cut", "messages": [user("count to 5000", "a2")]}
            async with alice.stream("POST", f"{url}/api/chat", json=body) as cut:
                await _read_deltas(cut.aiter_lines(), 1)
                assert (await alice.delete(f"{url}/api/threads/cut/messages/a2")).status_code == 204
            body = {"id": "bobs", "messages": [user("count to 5000", "b1")]}
            async with bob.stream("POST", f"{url}/api/chat", json=body) as bobs:
                await _read_deltas(bobs.aiter_lines(), 10)
                await asyncio.sleep(0.5)  # a flush or two: these are in the chunk log
                server.process.kill()  # SIGKILL: no shutdown code runs
                server.process.wait()

        with running_server(server_database_url, env=env) as restarted:
            url = restarted.url
            assert ended_with == ['data: {"type":"finish"}', "data: [DONE]"]
            [reply] = (await alice.get(f"{url}/api/threads/ended/messages")).json()
            assert (reply["parent_id"], reply["status"]) == (None, "complete")
            assert reply["content"]["parts"][-1]["text"] == " ".join(str(i) for i in range(1, 41))
            [reply] = (await alice.get(f"{url}/api/threads/cut/messages")).json()
            assert (reply["parent_id"], reply["status"]) == (None, "interrupted")
            prompt, reply = (await bob.get(f"{url}/api/threads/bobs/messages")).json()
            assert (reply["parent_id"], reply["status"]) == ("b1", "interrupted")
            assert reply["content"]["parts"][-1]["text"].startswith("1 2 3 4 5 6 7 8 9 10")
            for client, thread in ((alice, "ended"), (alice, "cut"), (bob, "bobs")):
                assert (await client.get(f"{url}/api/chat/{thread}/stream")).status_code == 204
            # Bob's thread goes on.
            again = {"id": "bobs", "message": user("count to 3", "b2")}
            response = await bob.post(f"{url}/api/chat", json=again)
            chunks = chunks_of(response.text)
            assert chunks[-1] == "[DONE]"
            assert "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta") == "1 2 3"
