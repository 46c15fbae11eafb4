"""What every store class shares: an engine and its two kinds of transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatkeep.store._errors import wrap_db_errors
from chatkeep.store.engine import WRITE

__all__ = ["Database"]


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with wrap_db_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that will write: on SQLite it takes the write lock at once (``BEGIN IMMEDIATE``)."""
        async with wrap_db_errors(), self.engine.connect() as conn:
            conn = await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    def _insert_ignoring_conflicts(self, table: Any) -> Any:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()
