"""chatkeep mounted into someone else's FastAPI app (tests/_host_app.py, a real uvicorn process): the host app keeps
its own routes, error format, lifespan and garbage collector; chatkeep's routes answer in chatkeep's format; and
chatkeep's lifecycle runs with the host's with no call of the host's, so a reply cut off by ``kill -9`` is stored
``interrupted`` when the app starts again, and its stream is not replayed forever."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from chatkeep.store import ChatStore
from tests._host_app import host_routes
from tests._server import running_server
from tests.conftest import system_transaction

ALICE = {"x-user": "alice"}


@pytest.fixture
def server_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'served.db'}" if backend == "sqlite" else create_pg_database()


async def _logged_chunks(database_url: str) -> int:
    store = ChatStore.from_url(database_url, pool_size=1)
    try:
        async with system_transaction(store.engine) as conn:
            return int((await conn.execute(text("SELECT count(*) FROM stream_chunks"))).scalar_one())
    finally:
        await store.close()


async def _until_logged(database_url: str) -> None:
    """Wait until the reply's first chunks are in the chunk log (its checkpoint), flushed by the server."""
    deadline = time.monotonic() + 30
    while await _logged_chunks(database_url) == 0:
        assert time.monotonic() < deadline, "no chunk of the reply reached the chunk log"
        await asyncio.sleep(0.05)


async def _deltas(lines: AsyncIterator[str], count: int) -> None:
    seen = 0
    async for line in lines:
        seen += line.startswith('data: {"type":"text-delta"')
        if seen == count:
            return


async def test_the_host_app_keeps_its_own_routes_errors_lifespan_and_gc(server_database_url: str) -> None:
    bare = FastAPI()  # the host's routes without chatkeep: what FastAPI answers by itself
    host_routes(bare)
    reference = httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url="http://t")
    async with reference, httpx.AsyncClient(timeout=30) as http:
        with running_server(server_database_url, app_factory="tests._host_app:create") as server:
            url = server.url
            for method, path in [
                ("GET", "/ping"), ("GET", "/teapot"), ("GET", "/items/abc"), ("GET", "/nowhere"),
                ("GET", "/api/own"), ("POST", "/ping"), ("GET", "/api/nowhere"),
            ]:  # fmt: skip
                served = await http.request(method, url + path)
                expected = await reference.request(method, path)
                assert (served.status_code, served.content) == (expected.status_code, expected.content), path
                assert served.headers["content-type"] == expected.headers["content-type"], path
            assert (await http.get(f"{url}/teapot")).json() == {"detail": "my teapot"}
            state = (await http.get(f"{url}/state")).json()
            assert state == {"x": "started", "gc": list(gc.get_threshold()), "frozen": 0}

            # chatkeep's routes, and only they, answer in chatkeep's format
            def error(response: httpx.Response) -> tuple[int, str]:
                return response.status_code, response.json()["error"]["code"]

            assert error(await http.get(f"{url}/api/threads")) == (401, "unauthorized")  # the host's auth raised it
            assert error(await http.get(f"{url}/api/threads/nope", headers=ALICE)) == (404, "thread_not_found")
            assert error(await http.post(f"{url}/api/threads", content=b"{", headers=ALICE)) == (400, "invalid_json")
            assert error(await http.get(f"{url}/api/threads?limit=0", headers=ALICE)) == (422, "validation_error")
            refused = await http.delete(f"{url}/api/chat", headers=ALICE)
            assert error(refused) == (405, "method_not_allowed") and refused.headers["allow"] == "POST"


def _user(text: str, message_id: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


async def test_a_reply_cut_off_by_a_crash_is_stored_when_the_host_app_starts_again(server_database_url: str) -> None:
    env = {"CHATKEEP_DEMO_DELAY_MS": "50"}
    async with httpx.AsyncClient(timeout=30, headers=ALICE) as alice:
        with running_server(server_database_url, env=env, app_factory="tests._host_app:create") as server:
            body = {"id": "t1", "messages": [_user("count to 5000", "u1")]}
            async with alice.stream("POST", f"{server.url}/api/chat", json=body) as reply:
                await _deltas(reply.aiter_lines(), 3)
                await _until_logged(server_database_url)
                server.process.kill()  # SIGKILL: no shutdown code runs
                server.process.wait()

        with running_server(server_database_url, env=env, app_factory="tests._host_app:create") as restarted:
            url = restarted.url
            prompt, stored = (await alice.get(f"{url}/api/threads/t1/messages")).json()
            assert (stored["parent_id"], stored["status"]) == ("u1", "interrupted")
            assert stored["content"]["parts"][-1]["text"].startswith("1 2 3")
            assert (await alice.get(f"{url}/api/chat/t1/stream")).status_code == 204  # nothing left to replay
            [message] = (await alice.get(f"{url}/api/chat/t1/messages")).json()[1:]
            assert message["id"] == stored["id"]
            # and it stops cleanly: chatkeep's shutdown runs before the host's, which closes the store
            restarted.process.terminate()
            restarted.process.wait(timeout=30)  # uvicorn ends by raising the signal again: -15 is a clean stop
            output = restarted.output()
            assert "Application shutdown complete" in output
            assert "Traceback" not in output and "ERROR" not in output


async def test_only_serve_tunes_the_garbage_collector(database_url: str) -> None:
    """``create_app`` and ``include_chatkeep`` leave the process's collector alone; ``chatkeep serve``'s app
    (``served_app``) tunes it once started, unless ``CHATKEEP_TUNE_GC`` is off."""
    from chatkeep.api import create_app
    from chatkeep.api.server import YOUNG_GC_THRESHOLD, served_app
    from chatkeep.settings import Settings

    threshold = gc.get_threshold()
    settings = Settings(database_url=database_url, migrate_on_start=False)
    try:
        for app in (create_app(settings), served_app(settings.model_copy(update={"tune_gc": False}))):
            async with app.router.lifespan_context(app):
                assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, 0)
        app = served_app(settings)
        async with app.router.lifespan_context(app):
            assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.parametrize("style", ["lifespan", "on_event"])
async def test_chatkeep_starts_after_and_stops_before_the_host(style: str, store: ChatStore) -> None:
    """Whichever way the host app declares its start-up and shutdown, chatkeep's run inside them, with no call of
    the host's: the host's resources (its store) are there for all of chatkeep's life."""
    from contextlib import asynccontextmanager

    from chatkeep import include_chatkeep
    from chatkeep.chat.service import ChatService
    from chatkeep.providers.demo import DemoModel
    from chatkeep.settings import Settings

    events: list[str] = []

    class Recorded(ChatService):
        async def startup(self) -> None:
            events.append("chatkeep start")
            await super().startup()

        async def close(self) -> None:
            await super().close()
            events.append("chatkeep stop")

    if style == "lifespan":

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            events.append("host start")
            yield
            events.append("host stop")

        app = FastAPI(lifespan=lifespan)
    else:
        app = FastAPI()
        with pytest.warns(DeprecationWarning):
            app.on_event("startup")(lambda: events.append("host start"))
            app.on_event("shutdown")(lambda: events.append("host stop"))
    include_chatkeep(app, store, settings=Settings(migrate_on_start=False), chat=Recorded(store, DemoModel()))
    async with app.router.lifespan_context(app):
        assert events == ["host start", "chatkeep start"]
    assert events == ["host start", "chatkeep start", "chatkeep stop", "host stop"]


async def test_a_host_that_still_starts_and_stops_chatkeep_itself_changes_nothing(store: ChatStore) -> None:
    """What the README once asked of a host app (``chat.startup()`` and ``chat.close()`` in its lifespan) is now
    done for it; doing it as well starts nothing twice and stops cleanly."""
    from contextlib import asynccontextmanager

    from chatkeep import include_chatkeep
    from chatkeep.settings import Settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await app.state.chatkeep.chat.startup()
        yield
        await app.state.chatkeep.chat.close()

    app = FastAPI(lifespan=lifespan)
    include_chatkeep(app, store, settings=Settings(migrate_on_start=False))
    async with app.router.lifespan_context(app):
        sweepers = [task for task in asyncio.all_tasks() if "_sweep_loop" in repr(task.get_coro())]
        assert len(sweepers) == 1
    assert sweepers[0].done()
