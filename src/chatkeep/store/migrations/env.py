"""Alembic environment for chatkeep (async, works on SQLite and PostgreSQL).

Run through :mod:`chatkeep.store.migrate` (``chatkeep db upgrade``), which hands over a live connection in
``config.attributes["connection"]``; with plain ``alembic`` the URL comes from ``sqlalchemy.url`` or
``DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from chatkeep.store.engine import make_engine
from chatkeep.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or "sqlite:///chatkeep.db"
    asyncio.run(_run_with_new_engine(url))


if context.is_offline_mode():
    raise SystemExit("chatkeep migrations run online only: give a database URL")
run()
