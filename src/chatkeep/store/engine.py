"""Database URLs and engines: what users paste in, what SQLAlchemy needs.

Nothing connects at import time. :func:`make_engine` is the one place engines are built, so every engine gets
the same per-dialect setup (SQLite pragmas and write locking; PostgreSQL pool sizing).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chatkeep.errors import InvalidInput, ValidationIssue

__all__ = ["WRITE", "make_engine", "normalize_database_url"]

#: Execution option that marks a connection as about to write. On SQLite such a transaction starts with
#: ``BEGIN IMMEDIATE``, taking the write lock up front instead of failing with "database is locked" when a
#: read transaction tries to upgrade while another writer holds the lock.
WRITE = "chatkeep_write"

# libpq query parameters that asyncpg does not take as keyword arguments, and what to do with them.
_PG_DROP_PARAMS = frozenset({"channel_binding", "target_session_attrs", "application_name_suffix"})


def normalize_database_url(raw: str) -> URL:
    """Turn a URL as users paste it into one with an async driver.

    ``postgres://`` and ``postgresql://`` (and ``postgresql+psycopg2://`` …) become ``postgresql+asyncpg://``,
    with libpq's ``sslmode=…`` translated to asyncpg's ``ssl=…``; ``sqlite:///path`` becomes
    ``sqlite+aiosqlite:///path``. A bare file path is taken as a SQLite file.
    """
    text = raw.strip()
    if "://" not in text:
        text = f"sqlite:///{text}"
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise InvalidInput([ValidationIssue(("database_url",), f"not a database URL: {raw!r}")]) from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        query = dict(url.query)
        sslmode = query.pop("sslmode", None)
        if sslmode is not None and "ssl" not in query:
            query["ssl"] = sslmode
        for name in _PG_DROP_PARAMS:
            query.pop(name, None)
        return url.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise InvalidInput(
        [ValidationIssue(("database_url",), f"unsupported database {backend!r}: use PostgreSQL or SQLite")]
    )


def _json_serializer(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits: orjson refuses them, the standard library does not
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def make_engine(url: str | URL, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` (normalized with :func:`normalize_database_url` when given as text)."""
    url = normalize_database_url(url) if isinstance(url, str) else url
    # The standard library parser keeps big integers exact (orjson would turn them into floats).
    common: dict[str, Any] = {"json_serializer": _json_serializer, "json_deserializer": json.loads, "echo": echo}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            engine = create_async_engine(url, poolclass=StaticPool, **common)
        else:
            engine = create_async_engine(url, **common)
        _setup_sqlite(engine)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800, **common
    )


def _setup_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA foreign_keys = ON",
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA busy_timeout = 10000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")
