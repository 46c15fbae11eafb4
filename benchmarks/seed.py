"""Fast seeding: rows written straight into chatkeep's tables, bypassing its API.

Message and part rows are made by chatkeep's own mapping (:func:`chatkeep.store.mapping.content_to_message_columns`),
so they are exactly what ``POST`` would have stored, and written with PostgreSQL's ``COPY`` (asyncpg) or one
SQLite ``executemany``. Many copies of one thread are made inside the database (``INSERT … SELECT``), so a thousand
200-message threads or 100,000 threads take seconds. Every scenario then reads what it seeded back through
chatkeep's API and compares it with what it meant to write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, Table
from sqlalchemy.types import TypeDecorator

from benchmarks.databases import BenchDatabase, pg_connection
from chatkeep.store.mapping import content_to_message_columns
from chatkeep.store.models import MessageRow, PartRow, ThreadRow

__all__ = ["ThreadSeed", "analyze", "clone_thread", "seed_bare_threads", "seed_threads"]

THREADS: Table = ThreadRow.__table__  # type: ignore[assignment]
MESSAGES: Table = MessageRow.__table__  # type: ignore[assignment]
PARTS: Table = PartRow.__table__  # type: ignore[assignment]

#: A fixed point in time, so seeded timestamps are the same on every run.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ThreadSeed:
    """A thread whose messages form one chain (each message's parent is the one before it)."""

    id: str
    user_id: str
    messages: Sequence[Mapping[str, Any]] = ()
    created_at: datetime = EPOCH


def _columns(table: Table) -> list[str]:
    return [column.name for column in table.columns]


def _converter(table: Table, name: str, backend: str) -> Callable[[Any], Any]:
    column_type = table.columns[name].type
    if isinstance(column_type, TypeDecorator):  # UTCDateTime
        if backend == "sqlite":
            return lambda v: None if v is None else v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return lambda v: v
    if isinstance(column_type, JSON):
        return lambda v: None if v is None else orjson.dumps(v).decode()
    if isinstance(column_type, Boolean) and backend == "sqlite":
        return lambda v: None if v is None else int(v)
    return lambda v: v


class _Rows:
    """Rows of one table as tuples in column order, converted for the backend's driver."""

    def __init__(self, table: Table, backend: str) -> None:
        self.table = table
        self.columns = _columns(table)
        self._convert = [_converter(table, name, backend) for name in self.columns]
        self.records: list[tuple[Any, ...]] = []

    def add(self, values: Mapping[str, Any]) -> None:
        self.records.append(
            tuple(conv(values.get(name)) for name, conv in zip(self.columns, self._convert, strict=True))
        )


def _thread_rows(seeds: Iterable[ThreadSeed], backend: str) -> tuple[_Rows, _Rows, _Rows]:
    threads, messages, parts = _Rows(THREADS, backend), _Rows(MESSAGES, backend), _Rows(PARTS, backend)
    for seed in seeds:
        parent: str | None = None
        moment = seed.created_at
        for seq, message in enumerate(seed.messages, start=1):
            moment = seed.created_at + timedelta(milliseconds=seq)
            content = {k: v for k, v in message.items() if k != "id"}
            columns, part_rows = content_to_message_columns(content)
            messages.add(
                {
                    "thread_id": seed.id,
                    "id": message["id"],
                    "parent_id": parent,
                    "seq": seq,
                    "format": "ai-sdk/v6",
                    "role": columns["role"],
                    "metadata": columns["metadata_"],
                    "content": columns["content"],
                    "extra": columns["extra"],
                    "status": None,
                    "created_at": moment,
                    "updated_at": moment,
                }
            )
            for row in part_rows:
                parts.add({**row, "thread_id": seed.id, "message_id": message["id"]})
            parent = message["id"]
        threads.add(
            {
                "id": seed.id,
                "user_id": seed.user_id,
                "status": "regular",
                "head_id": parent,
                "message_seq": len(seed.messages),
                "created_at": seed.created_at,
                "updated_at": moment,
            }
        )
    return threads, messages, parts


async def _write(database: BenchDatabase, tables: Sequence[_Rows]) -> None:
    if database.backend == "postgres":
        async with pg_connection(database, bulk=True) as conn, conn.transaction():
            for rows in tables:
                if rows.records:
                    await conn.copy_records_to_table(rows.table.name, records=rows.records, columns=rows.columns)
        return
    assert database.path is not None
    with _SqliteTransaction(database) as conn:
        for rows in tables:
            if rows.records:
                marks = ", ".join("?" for _ in rows.columns)
                conn.executemany(
                    f"INSERT INTO {rows.table.name} ({', '.join(rows.columns)}) VALUES ({marks})", rows.records
                )


class _SqliteTransaction:
    """A raw sqlite3 connection in one transaction, committed on success."""

    def __init__(self, database: BenchDatabase) -> None:
        assert database.path is not None
        self._path = database.path
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        self._conn = sqlite3.connect(self._path, isolation_level=None)
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.execute("BEGIN")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._conn is not None
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        self._conn.close()


async def seed_threads(database: BenchDatabase, seeds: Sequence[ThreadSeed]) -> None:
    """Write the threads with their messages and parts."""
    await _write(database, _thread_rows(seeds, database.backend))


async def seed_bare_threads(database: BenchDatabase, user_id: str, prefix: str, count: int) -> list[str]:
    """``count`` threads without messages, made inside the database: ``<prefix>0`` (the oldest) … with
    ``updated_at`` one second apart from :data:`EPOCH` on. Returns their ids, oldest first."""
    user = _quote(user_id)
    columns = "id, user_id, title, status, message_seq, created_at, updated_at"
    if database.backend == "postgres":
        statement = (
            f"INSERT INTO threads ({columns}) SELECT {_quote(prefix)} || g, {user}, 'Thread ' || g, 'regular', 0, "
            f"x.at, x.at FROM generate_series(0, {int(count) - 1}) g, "
            f"LATERAL (SELECT timestamptz '{EPOCH.isoformat()}' + g * interval '1 second' AS at) x"
        )
        async with pg_connection(database, bulk=True) as conn:
            await conn.execute(statement)
    else:
        # chatkeep's SQLite timestamps are UTC text with microseconds.
        at = f"strftime('%Y-%m-%d %H:%M:%S', {int(EPOCH.timestamp())} + n, 'unixepoch') || '.000000'"
        statement = (
            f"WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < {int(count) - 1}) "
            f"INSERT INTO threads ({columns}) SELECT {_quote(prefix)} || n, {user}, 'Thread ' || n, 'regular', 0, "
            f"{at}, {at} FROM g"
        )
        with _SqliteTransaction(database) as conn:
            conn.execute(statement)
    return [f"{prefix}{n}" for n in range(count)]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def clone_thread(database: BenchDatabase, source_id: str, prefix: str, count: int) -> list[str]:
    """Copy a thread with all its messages and parts ``count`` times, inside the database; returns the new ids
    (``<prefix>1`` … ``<prefix><count>``)."""
    numbers = f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {int(count)}) "
    new_id = f"{_quote(prefix)} || g.n"
    statements = []
    for table, key in ((THREADS, "id"), (MESSAGES, "thread_id"), (PARTS, "thread_id")):
        columns = _columns(table)
        select = ", ".join(new_id if name == key else f"src.{name}" for name in columns)
        statements.append(
            f"{numbers}INSERT INTO {table.name} ({', '.join(columns)}) "
            f"SELECT {select} FROM {table.name} AS src, g WHERE src.{key} = {_quote(source_id)}"
        )
    if database.backend == "postgres":
        async with pg_connection(database, bulk=True) as conn, conn.transaction():
            for statement in statements:
                await conn.execute(statement)
    else:
        with _SqliteTransaction(database) as conn:
            for statement in statements:
                conn.execute(statement)
    return [f"{prefix}{n}" for n in range(1, count + 1)]


async def analyze(database: BenchDatabase) -> None:
    """Refresh the planner's statistics after bulk loading (what autovacuum would do a little later)."""
    if database.backend == "postgres":
        async with pg_connection(database) as conn:
            await conn.execute("ANALYZE")
        return
    assert database.path is not None
    conn = sqlite3.connect(database.path, isolation_level=None)
    try:
        conn.execute("ANALYZE")
    finally:
        conn.close()
