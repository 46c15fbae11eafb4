"""PostgreSQL restarted under load (issue #6): requests fail fast with a clear 503 during the outage, the same
server process recovers by itself, and nothing is half-written.

A private, throwaway PostgreSQL (the shared one on 5432 must never be stopped) and a real ``chatkeep serve``
process: several clients stream chat turns (the demo model, 20 ms a chunk, so replies are mid-stream) while
others create, list and load threads; PostgreSQL is stopped (``-m immediate``: no goodbye to any connection),
left down for a while, and started again.

"No half-written message" means, precisely, once every stream has ended:

* every message is written with all its parts or not at all: the parts of every message have ``part_order``
  exactly ``0 … n-1`` (and pass the schema's CHECK constraints), no part is left ``streaming``;
* no message is left ``streaming`` and no stream ``active``: a reply is stored either complete (status NULL)
  or, when it could not be stored in full, as last checkpointed with ``interrupted``/``error``/``aborted`` and
  its parts closed (the same state a crash leaves, see ``test_durable_streams.py``);
* every reply whose stream ended cleanly for its client (``finish``, no ``error``, ``[DONE]``) is stored
  complete with exactly the text the client received. In this test the outage is far shorter than the final
  store's retry window, so every reply that started must end that way, including those in flight when
  PostgreSQL went away and those that finished while it was down;
* a chat request refused with 503 left no reply behind (at most the user message it stored before the outage).
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.errors import DatabaseUnavailable
from chatkeep.providers.base import ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import Server, free_port, running_server

#: the role chatkeep connects as: an ordinary one, as in production (a superuser would bypass row-level security)
APP_ROLE = "chatkeep_app"
DATABASE = "chatkeep"
#: every request that is not a chat stream must answer within this, outage or not (generous: the machine is noisy)
FAST = 5.0
DELAY_MS = 20
COUNT = 150  # a turn streams COUNT numbers at DELAY_MS each: about 3 s
OUTAGE_S = 2.5


def _postgres_bin() -> Path:
    """Debian's PostgreSQL binaries, else those of the ``pgserver`` package (the dev extra)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"))
    for candidate in candidates:
        if all(os.access(Path(candidate) / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    pytest.fail(
        "this test needs its own PostgreSQL server to stop and start: install Debian's postgresql package "
        "(/usr/lib/postgresql/*/bin) or the dev extra (pgserver); looked in " + ", ".join(candidates or ["nothing"])
    )


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory, on its own port, with trust authentication. As root, the
    server runs as an unprivileged system user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="chatkeep-pg-outage-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = next((a for a in _accounts() if a.pw_uid != 0), None)
            if account is None:
                pytest.fail(
                    "running as root, this test needs an unprivileged user (postgres or nobody) to run PostgreSQL"
                )
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "fsync = off\nmax_connections = 60\n"
            )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self.app_url = f"postgresql://{APP_ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, exe: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / exe), *args], cwd=self.dir, capture_output=True, text=True, timeout=60, **self._as
        )
        if result.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            pytest.fail(f"{exe} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{log}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def cleanup(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            cwd=self.dir, capture_output=True, timeout=60, **self._as,
        )  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


def _accounts() -> Iterator[pwd.struct_passwd]:
    for name in ("postgres", "pgserver", "nobody"):
        try:
            yield pwd.getpwnam(name)
        except KeyError:
            continue


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()

        async def prepare() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres")
            try:
                await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")
                await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}")
            finally:
                await conn.close()

        asyncio.run(prepare())
        yield pg
    finally:
        pg.cleanup()


# -- the load --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request as a client saw it (times from ``time.monotonic()``)."""

    kind: str
    started: float
    answered: float  # when the status line arrived (or the request failed)
    ended: float  # when the body was read to its end
    status: int | None  # None: no HTTP answer at all (a timeout, a dropped connection)
    failure: str | None = None
    body: Any = None
    retry_after: str | None = None
    thread_id: str | None = None
    count: int = 0  # a chat turn's "count to N"
    chunks: list[Any] = field(default_factory=list)


def _user(text: str) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}


def numbers(n: int) -> str:
    return " ".join(str(i) for i in range(1, n + 1))


def text_of(chunks: list[Any]) -> str:
    return "".join(c["delta"] for c in chunks if isinstance(c, dict) and c.get("type") == "text-delta")


class Load:
    """Clients hammering one server until ``stop`` is set; every request is recorded in ``calls``."""

    def __init__(self, server: Server, client: httpx.AsyncClient) -> None:
        self.url = server.url
        self.client = client
        self.calls: list[Call] = []
        self.stop = asyncio.Event()
        self.progress: dict[int, int] = {}  # chat worker → text deltas received in its current turn

    async def _json_call(self, kind: str, method: str, path: str, **kwargs: Any) -> Call:
        started = time.monotonic()
        try:
            response = await self.client.request(method, f"{self.url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            now = time.monotonic()
            call = Call(kind, started, now, now, None, failure=repr(exc))
        else:
            now = time.monotonic()
            call = Call(kind, started, now, now, response.status_code, body=_body(response.content))
            call.retry_after = response.headers.get("retry-after")
        self.calls.append(call)
        return call

    async def api_worker(self, history_thread: str) -> None:
        """Thread creates, lists and history loads, one after the other."""
        while not self.stop.is_set():
            created = await self._json_call("create", "POST", "/api/threads", json={})
            if created.status == 201:
                created.thread_id = created.body["id"]
            await self._json_call("list", "GET", "/api/threads", params={"limit": 20})
            await self._json_call("history", "GET", f"/api/threads/{history_thread}/messages")
            await asyncio.sleep(0.05)

    async def chat_prober(self) -> None:
        """A short chat turn every 0.2 s, each on its own (one waiting for its reply to be stored does not hold
        up the next): during the outage they are refused before anything streams."""
        turns: list[asyncio.Task[Call]] = []
        while not self.stop.is_set():
            turns.append(asyncio.create_task(self.chat_turn(f"short-{len(turns)}", count=3)))
            await asyncio.sleep(0.2)
        await asyncio.gather(*turns)

    async def chat_worker(self, worker: int) -> None:
        """Long chat turns, one after the other."""
        turn = 0
        while not self.stop.is_set():
            turn += 1
            self.progress[worker] = 0
            await self.chat_turn(f"long-{worker}-{turn}", worker=worker)
            await asyncio.sleep(0.1)

    async def chat_turn(self, thread_id: str, *, count: int = COUNT, worker: int | None = None) -> Call:
        body = {"id": thread_id, "messages": [_user(f"count to {count}")]}
        started = time.monotonic()
        call = Call("chat", started, started, started, None, thread_id=thread_id, count=count)
        self.calls.append(call)
        try:
            async with self.client.stream("POST", f"{self.url}/api/chat", json=body) as response:
                call.answered = time.monotonic()
                call.status = response.status_code
                call.retry_after = response.headers.get("retry-after")
                if response.status_code != 200:
                    call.body = _body(await response.aread())
                    return call
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    call.chunks.append(data if data == "[DONE]" else json.loads(data))
                    if worker is not None and data.startswith('{"type":"text-delta"'):
                        self.progress[worker] += 1
        except httpx.HTTPError as exc:
            call.failure = repr(exc)
        finally:
            call.ended = time.monotonic()
        return call


def _body(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return content.decode(errors="replace")  # not JSON: kept for the assertion message


def _is_503(call: Call) -> bool:
    """A clear refusal: 503, the JSON error shape, and when to come back."""
    return (
        call.status == 503
        and isinstance(call.body, dict)
        and call.body.get("error", {}).get("code") == "database_unavailable"
        and bool(call.body["error"].get("message"))
        and call.retry_after is not None
        and int(call.retry_after) >= 1
    )


def _ok(call: Call) -> bool:
    return call.status in (200, 201, 204)


async def _wait_healthy(client: httpx.AsyncClient, url: str, seconds: float = 15.0) -> float:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (await client.get(f"{url}/healthz", timeout=FAST)).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not serve again within {seconds} s of PostgreSQL's restart")
        await asyncio.sleep(0.05)


# -- the test --------------------------------------------------------------------------------------------------


async def test_postgresql_restart_under_load(private_pg: PrivatePostgres) -> None:
    # One local user stands for many people here: no per-user limit on concurrent replies.
    env = {
        "CHATKEEP_DEMO_DELAY_MS": str(DELAY_MS),
        "CHATKEEP_DB_POOL_SIZE": "5",
        "CHATKEEP_MAX_CONCURRENT_STREAMS": "0",
    }
    with running_server(private_pg.app_url, env=env) as server:
        pid = server.process.pid
        timeout = httpx.Timeout(15.0, connect=FAST)
        async with httpx.AsyncClient(timeout=timeout) as client:
            load = Load(server, client)
            seed = await load.chat_turn("seed", count=3)
            assert seed.status == 200, server.output()
            _assert_clean_end(seed)
            load.calls.clear()

            workers = [asyncio.create_task(load.chat_worker(i)) for i in range(3)]
            workers += [asyncio.create_task(load.api_worker("seed")) for _ in range(2)]
            workers.append(asyncio.create_task(load.chat_prober()))
            try:
                # Under way: every chat client is in the middle of a reply.
                deadline = time.monotonic() + 20
                while len(load.progress) < 3 or min(load.progress.values()) < 20:
                    assert time.monotonic() < deadline, "the load did not get going"
                    await asyncio.sleep(0.02)

                await asyncio.to_thread(private_pg.stop, "immediate")
                down_at = time.monotonic()
                await asyncio.sleep(OUTAGE_S)
                restart_at = time.monotonic()
                await asyncio.to_thread(private_pg.start)
                up_at = await _wait_healthy(client, server.url)
                await asyncio.sleep(2.0)
                load.stop.set()
                await asyncio.wait_for(asyncio.gather(*workers), 30)
            finally:
                for worker in workers:
                    worker.cancel()

            assert server.process.poll() is None and server.process.pid == pid, "the server process must live on"
            output = server.output()

            # -- during the outage: fast, clear 503s; no hangs, no 500s, no dropped connections -------------------
            calls = load.calls
            broken = [c for c in calls if c.status is None or c.failure is not None]
            assert not broken, (broken, output)
            assert not [c for c in calls if c.status not in (200, 201, 204, 503)], output
            slow = [c for c in calls if c.answered - c.started > FAST]
            assert not slow, slow
            during = [c for c in calls if c.started >= down_at and c.answered <= restart_at]
            assert {c.kind for c in during} == {"chat", "create", "list", "history"}, during
            assert all(_is_503(c) for c in during), [c for c in during if not _is_503(c)]
            refused = [c for c in calls if c.status == 503]
            assert all(_is_503(c) for c in refused), refused
            assert all(c.ended - c.started < FAST for c in refused), "a refusal must be quick"

            # -- after it: the same process serves every request again ---------------------------------------------
            after = [c for c in calls if c.started >= up_at]
            assert after and all(_ok(c) for c in after), [c for c in after if not _ok(c)]
            assert {c.kind for c in after} >= {"create", "list", "history"}

            # -- every stream ended for its client, cleanly, with the whole reply -------------------------------
            streams = [c for c in calls if c.kind == "chat" and c.status == 200]
            spanning = [c for c in streams if c.started < down_at and c.ended > restart_at]
            assert len(spanning) >= 3, "every long chat turn was mid-reply when PostgreSQL went away"
            for call in streams:
                _assert_clean_end(call)
            created = {c.thread_id for c in calls if c.kind == "create" and c.status == 201}

            await _check_stored(private_pg, client, server.url, streams, refused, created)

            # -- an idle restart: the first request afterwards succeeds (no stale pooled connection) -----------
            await asyncio.to_thread(private_pg.stop, "fast")
            await asyncio.to_thread(private_pg.start)
            await asyncio.sleep(0.2)  # the server's event loop sees its pooled connections close
            first = await client.get(f"{server.url}/api/threads", params={"limit": 5})
            assert first.status_code == 200, (first.text, server.output())
            again = await load.chat_turn("after-idle-restart", count=3)
            assert again.status == 200
            _assert_clean_end(again)

            assert "Traceback" not in server.output(), server.output()
    assert server.process.returncode is not None


def _assert_clean_end(call: Call) -> None:
    """The stream ended for its client with the whole reply, ``finish`` and ``[DONE]``, and no ``error``."""
    assert call.chunks and call.chunks[-1] == "[DONE]", call
    kinds = [c["type"] for c in call.chunks[:-1]]
    assert kinds[0] == "start" and kinds[-1] == "finish" and "error" not in kinds, call
    assert text_of(call.chunks) == numbers(call.count), call


async def _check_stored(
    pg: PrivatePostgres,
    client: httpx.AsyncClient,
    url: str,
    streams: list[Call],
    refused: list[Call],
    created: set[str | None],
) -> None:
    """The database holds no half-written message (see the module docstring)."""
    conn = await asyncpg.connect(pg.admin_url)  # a superuser: sees every row, row-level security or not
    try:
        # The end of a stream may be written just after its [DONE] (by the flusher, if the database was away).
        deadline = time.monotonic() + 10
        while await conn.fetchval("SELECT count(*) FROM streams WHERE status = 'active'"):
            assert time.monotonic() < deadline, await conn.fetch("SELECT * FROM streams WHERE status = 'active'")
            await asyncio.sleep(0.1)

        unfinished = await conn.fetch("SELECT thread_id, id, status FROM messages WHERE status = 'streaming'")
        assert not unfinished, unfinished
        gaps = await conn.fetch(
            """SELECT thread_id, message_id, count(*) AS n, min(part_order) AS lo, max(part_order) AS hi
               FROM parts GROUP BY thread_id, message_id
               HAVING min(part_order) <> 0 OR max(part_order) <> count(*) - 1"""
        )
        assert not gaps, gaps
        open_parts = await conn.fetch(
            "SELECT thread_id, message_id, part_order FROM parts "
            "WHERE text_state = 'streaming' OR reasoning_state = 'streaming'"
        )
        assert not open_parts, open_parts
        orphan_parts = await conn.fetchval(
            "SELECT count(*) FROM parts p WHERE NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.thread_id = p.thread_id AND m.id = p.message_id)"
        )
        assert orphan_parts == 0
        replies = await conn.fetch("SELECT thread_id, id, status FROM messages WHERE role = 'assistant'")
        threads = {row["id"] for row in await conn.fetch("SELECT id FROM threads")}
    finally:
        await conn.close()

    # Every reply is complete, with the exact text its client received; no refused turn left a reply behind.
    streamed = {c.thread_id: c for c in streams}
    assert {r["thread_id"] for r in replies} == set(streamed) | {"seed"}, replies
    assert all(r["status"] is None for r in replies), replies
    for thread_id, call in streamed.items():
        response = await client.get(f"{url}/api/threads/{thread_id}/messages")
        assert response.status_code == 200, response.text
        rows = response.json()
        assert [r["content"]["role"] for r in rows] == ["user", "assistant"], rows
        start = call.chunks[0]
        assert rows[1]["id"] == start["messageId"] and rows[1]["status"] == "complete", rows
        assert rows[1]["content"]["parts"][-1] == {"type": "text", "text": text_of(call.chunks), "state": "done"}
    assert not {c.thread_id for c in refused if c.kind == "chat"} & {r["thread_id"] for r in replies}
    assert created <= threads, "a thread whose creation was answered 201 is stored"


# -- the same guarantees, in process, for outages this test does not wait out -----------------------------------


async def _post_chat(service: ChatService, store: ChatStore) -> str:
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    body = {"id": "t1", "messages": [_user("hi")]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=10) as client:
        response = await client.post("/api/chat", json=body)
    assert response.status_code == 200
    await service.wait_idle()
    return response.text


async def _words(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
    for word in ("one", " two", " three"):
        yield word
        await asyncio.sleep(0.1)


async def test_a_reply_the_database_never_takes_ends_as_after_a_crash(
    store: ChatStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``store_retry_for``, the client's stream ends with an ``error`` chunk, and the reply is left as last
    checkpointed with its stream active: the sweep then closes both (``interrupted``), as after a crash."""
    upsert = store.upsert_message

    async def checkpoints_only(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("status") != "streaming" and kwargs["message_id"] != "u1":
            raise DatabaseUnavailable("The database is unavailable; try again shortly.")
        return await upsert(*args, **kwargs)

    monkeypatch.setattr(store, "upsert_message", checkpoints_only)
    service = ChatService(store, FunctionModel(_words), checkpoint_interval=0.05, store_retry_for=0.3)
    sse = await _post_chat(service, store)
    assert sse.endswith(
        'data: {"type":"error","errorText":"The reply could not be saved in full."}\n\ndata: [DONE]\n\n'
    )

    page = await store.list_messages("local", "t1", include_streaming=True)
    reply = page.items[1]
    assert reply.status == "streaming"
    assert [i.status for i in await service.hub.log.active("local", "t1")] == ["active"]
    later = datetime.now(UTC) + timedelta(minutes=1)  # the heartbeat has gone stale
    assert len(await service.hub.log.interrupt_orphans(lambda owner: False, stale_before=later)) == 1
    reply = (await store.list_messages("local", "t1")).items[1]
    assert reply.status == "interrupted"
    text = reply.content["parts"][-1]
    assert text["state"] == "done" and "one two three".startswith(text["text"]) and text["text"]


async def test_the_stream_log_catches_up_after_an_outage(store: ChatStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and the stream's end that could not be written are written, in order, once the database is back."""
    service = ChatService(store, FunctionModel(_words))
    append = service.hub.log.append
    failures = {"append": 4}
    ended: list[str] = []

    async def flaky_append(*args: Any, **kwargs: Any) -> set[str]:
        ended.extend(kwargs.get("ends") or ())
        if failures["append"]:
            failures["append"] -= 1
            raise DatabaseUnavailable("The database is unavailable; try again shortly.")
        return await append(*args, **kwargs)

    monkeypatch.setattr(service.hub.log, "append", flaky_append)
    sse = await _post_chat(service, store)
    assert sse.endswith('data: {"type":"finish"}\n\ndata: [DONE]\n\n')
    sent = [line.removeprefix("data: ") for line in sse.split("\n\n") if line.startswith("data: {")]

    deadline = time.monotonic() + 5
    while (info := await service.hub.log.get(ended[-1]) if ended else None) is None or info.status == "active":
        assert time.monotonic() < deadline, "the stream's end was never written"
        await asyncio.sleep(0.05)
    assert info.status == "done" and failures == {"append": 0}
    assert [chunk for _, chunk in await service.hub.log.chunks(info.id, -1)] == sent
    assert (await store.list_messages("local", "t1")).items[1].status is None
