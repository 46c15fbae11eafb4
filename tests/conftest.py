"""Shared fixtures: the same tests run against real SQLite and real PostgreSQL.

* ``backend`` is parametrized ``sqlite`` / ``postgresql``; each backend gets one freshly migrated database per
  test session (PostgreSQL: a new database on the test server, dropped at the end).
* ``store`` empties the tables before each test, so tests never see each other's rows.
* ``client`` is an ``httpx.AsyncClient`` talking to the real app in-process (no network), authenticated as one
  local user; ``make_client`` gives clients for other users (JWT mode).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatkeep.api import create_app
from chatkeep.protocol import generate_id
from chatkeep.settings import Settings
from chatkeep.store import SYSTEM, ChatStore, set_caller
from chatkeep.store.migrate import upgrade
from tests._pg import postgres_server

# The browser tests' fixtures (web, chromium, browser, context, page), shared by tests/test_web*.py.
pytest_plugins = ["tests._browser"]

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"
#: the PostgreSQL role chatkeep connects as in the tests: an ordinary one, so row-level security binds it
APP_ROLE = "chatkeep_app"
ClientFactory = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: a developer's own CHATKEEP_* variables must not change what tests see."""
    import os

    for name in list(os.environ):
        if name.startswith("CHATKEEP_") and name != "CHATKEEP_TEST_POSTGRES_URL" or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATKEEP_DEMO_DELAY_MS", "0")
    # A thread changes only by what its test does: no title appears by itself in the background (and no model
    # server gets a title request the test did not script). The tests of automatic titles turn them on.
    monkeypatch.setenv("CHATKEEP_AUTO_TITLE", "false")
    # No test may reach a real model service; the local fake OpenAI server is on loopback and still allowed.
    monkeypatch.setattr("chatkeep.providers.openai.ALLOW_MODEL_REQUESTS", False)


@asynccontextmanager
async def system_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that sees every user's rows, for tests that check the stored rows themselves (on
    PostgreSQL, row-level security hides every row from a transaction that does not say whom it acts for)."""
    async with engine.begin() as conn:
        await set_caller(conn, SYSTEM)
        yield conn


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def create_pg_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """Make fresh, empty PostgreSQL databases; all are dropped when the session ends."""
    made: list[str] = []

    async def _exec(sql: str) -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # chatkeep connects as an ordinary role that owns its tables, as it should in production: a superuser would
    # bypass row-level security, and the tests would not see a query that forgets whom it acts for.
    asyncio.run(
        _exec(
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                    CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS;
                END IF;
            END $$"""
        )
    )

    def create() -> str:
        name = f"chatkeep_test_{generate_id().lower()}"
        asyncio.run(_exec(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}'))
        made.append(name)
        url = make_url(pg_admin_url).set(database=name, username=APP_ROLE, password=APP_ROLE)
        return url.render_as_string(hide_password=False)

    yield create
    for name in made:
        asyncio.run(_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory, create_pg_database: Callable[[], str]) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'chatkeep.db'}"
    return create_pg_database()


@pytest.fixture(scope="session")
async def migrated_store(database_url: str) -> AsyncIterator[ChatStore]:
    store = ChatStore.from_url(database_url, pool_size=5)
    await upgrade(store.engine)
    yield store
    await store.close()


@pytest.fixture
async def store(migrated_store: ChatStore) -> ChatStore:
    async with system_transaction(migrated_store.engine) as conn:
        await conn.execute(text("DELETE FROM threads"))
    return migrated_store


@pytest.fixture
async def make_client(store: ChatStore) -> AsyncIterator[ClientFactory]:
    """Clients of an app that requires JWTs; ``await make_client("alice")`` is a client acting as alice."""
    app = create_app(Settings(jwt_secret=JWT_SECRET, migrate_on_start=False), store=store)
    clients: list[httpx.AsyncClient] = []

    async def make(user_id: str) -> httpx.AsyncClient:
        token = jwt.encode({"sub": user_id, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://chatkeep.test",
            headers={"authorization": f"Bearer {token}"},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(store: ChatStore) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app in single-user mode (no authentication), as ``chatkeep serve`` runs by default."""
    app = create_app(Settings(migrate_on_start=False), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as c:
        yield c


async def count_rows(store: ChatStore) -> dict[str, int]:
    """How many rows each table holds: tests use it to prove a refused request stored nothing."""
    async with system_transaction(store.engine) as conn:
        return {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("threads", "messages", "parts")
        }


FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> Any:
    import json

    return json.loads((FIXTURES / name).read_text())
