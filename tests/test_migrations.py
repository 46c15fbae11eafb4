"""``alembic upgrade head`` on an empty database gives exactly the models' schema (no autogenerate diff), on
both databases, and the migrations go down and up again cleanly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from chatkeep.store import ChatStore, make_engine
from chatkeep.store.migrate import current_revision, downgrade, head_revision, upgrade
from chatkeep.store.models import Base


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}" if backend == "sqlite" else create_pg_database()


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_from_empty_matches_the_models(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {
                "alembic_version", "threads", "messages", "parts", "streams", "stream_chunks", "tool_approvals",
            }  # fmt: skip
            assert await conn.run_sync(_diff) == []
        await upgrade(engine)  # a second run is a no-op
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_back(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        await upgrade(engine)
        await downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_upgrading_keeps_the_data(empty_database_url: str) -> None:
    """Every revision after the first runs on a database that holds messages, and loses none of them."""
    engine = make_engine(empty_database_url)
    store = ChatStore(engine)
    message = {"role": "assistant", "parts": [{"type": "step-start"}, {"type": "text", "text": "kept"}]}
    try:
        await upgrade(engine, "0001")
        async with engine.begin() as conn:  # the store's code is for the newest schema: write 0001 rows by hand
            await conn.execute(
                text(
                    "INSERT INTO threads (id, user_id, status, message_seq, created_at, updated_at) "
                    "VALUES ('t1', 'u1', 'regular', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO messages (thread_id, id, seq, format, role, created_at, updated_at) "
                    "VALUES ('t1', 'm1', 1, 'ai-sdk/v6', 'assistant', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO parts (thread_id, message_id, part_order, type, text_text) VALUES "
                    "('t1', 'm1', 0, 'step-start', NULL), ('t1', 'm1', 1, 'text', 'kept')"
                )
            )
        await upgrade(engine)
        (stored,) = (await store.list_messages("u1", "t1")).items
        assert stored.content == message
    finally:
        await engine.dispose()


async def test_a_database_without_the_schema_is_a_clear_503(empty_database_url: str) -> None:
    import httpx

    from chatkeep.api import create_app
    from chatkeep.settings import Settings

    store = ChatStore(make_engine(empty_database_url))
    app = create_app(Settings(migrate_on_start=False), store=store)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/api/threads")
        assert response.status_code == 503
        assert response.json()["error"] == {
            "code": "schema_missing",
            "message": "The database has no chatkeep schema yet: run 'chatkeep db upgrade'.",
        }
    finally:
        await store.close()
