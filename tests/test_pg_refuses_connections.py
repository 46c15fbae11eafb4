"""A PostgreSQL that refuses new connections is a 503 with ``Retry-After``, and the same app serves again once it
accepts them (issue #12, point 9).

An operator closes a database for maintenance (``ALTER DATABASE … ALLOW_CONNECTIONS false``: SQLSTATE 55000 on
connect) or caps its connections (``CONNECTION LIMIT 0``: 53300, too many connections), and ends the sessions
already open. Each test has a database of its own, so the shared server's other databases are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.store.migrate import upgrade

REFUSALS = {
    "allow-connections-false": ("ALLOW_CONNECTIONS false", "ALLOW_CONNECTIONS true"),
    "connection-limit-0": ("CONNECTION LIMIT 0", "CONNECTION LIMIT -1"),
}


@pytest.fixture
def own_url(create_pg_database: Callable[[], str]) -> str:
    return create_pg_database()  # (it runs its own event loop: not from an async fixture)


@pytest.fixture
async def own_database(own_url: str) -> AsyncIterator[tuple[str, ChatStore]]:
    url = own_url
    store = ChatStore.from_url(url, pool_size=2)
    await upgrade(store.engine)
    yield make_url(url).database or "", store
    await store.close()


async def _admin(pg_admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(pg_admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize(("refuse", "allow"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_database_refusing_connections_is_a_503_until_it_accepts_them(
    own_database: tuple[str, ChatStore], pg_admin_url: str, caplog: pytest.LogCaptureFixture, refuse: str, allow: str
) -> None:
    name, store = own_database
    app = create_app(Settings(migrate_on_start=False), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.post("/api/threads", json={"title": "before"})).status_code == 201
        await _admin(
            pg_admin_url,
            f'ALTER DATABASE "{name}" {refuse}',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        try:
            with caplog.at_level(logging.WARNING):
                for request in (
                    client.build_request("GET", "/api/threads"),
                    client.build_request("POST", "/api/threads", json={"title": "during"}),
                    client.build_request("GET", "/healthz"),
                ):
                    response = await client.send(request)
                    assert response.status_code == 503, (request.url, response.text)
                    assert response.headers["retry-after"] == "1"
                    assert response.json()["error"]["code"] == "database_unavailable"
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.message == "unexpected error"]
        finally:
            await _admin(pg_admin_url, f'ALTER DATABASE "{name}" {allow}')
        listed = await client.get("/api/threads")  # the same app, no restart
        assert listed.status_code == 200
        assert [t["title"] for t in listed.json()] == ["before"]
