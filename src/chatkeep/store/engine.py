"""Database URLs and engines: what users paste in, what SQLAlchemy needs.

Nothing connects at import time. :func:`make_engine` is the one place engines are built, so every engine gets
the same per-dialect setup (SQLite pragmas and write locking; PostgreSQL pool sizing, connect timeout and the
check that drops pooled connections the server closed).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chatkeep.errors import InvalidInput, ValidationIssue

__all__ = ["WRITE", "make_engine", "normalize_database_url"]

#: Execution option that marks a connection as about to write. On SQLite such a transaction starts with
#: ``BEGIN IMMEDIATE``, taking the write lock up front instead of failing with "database is locked" when a
#: read transaction tries to upgrade while another writer holds the lock.
WRITE = "chatkeep_write"

#: Seconds a new PostgreSQL connection may take (asyncpg's own default is 60): a database that does not answer
#: makes a request fail with :class:`~chatkeep.errors.DatabaseUnavailable` (HTTP 503) instead of hanging. A stopped
#: server refuses at once; this bounds the case of a host that drops packets. ``?timeout=`` in the URL overrides it.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a transaction may wait for a free pooled connection before it fails with ``DatabaseUnavailable``. Long
#: enough to ride out a burst (a thousand chats started at once queue for the pool instead of failing); a database
#: that is down fails fast anyway, at connect.
POOL_TIMEOUT_S = 30.0

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


def make_engine(url: str | URL, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` (normalized with :func:`normalize_database_url` when given as text).

    On PostgreSQL ``pool_size`` connections stay open, and a quarter more may open for bursts (closed again when
    returned: opening connections over and over cost more than the queries they ran).
    """
    url = normalize_database_url(url) if isinstance(url, str) else url
    # The standard library parser keeps big integers exact (orjson turns those beyond 64 bits into floats).
    common: dict[str, Any] = {"json_serializer": _json_serializer, "json_deserializer": json.loads, "echo": echo}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            engine = create_async_engine(url, poolclass=StaticPool, **common)
        else:
            engine = create_async_engine(url, **common)
        _setup_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {} if "timeout" in url.query else {"timeout": CONNECT_TIMEOUT_S}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 4,
        pool_timeout=POOL_TIMEOUT_S,
        pool_recycle=1800,
        connect_args=connect_args,
        **common,
    )
    _setup_postgresql(engine)
    return engine


def _setup_postgresql(engine: AsyncEngine) -> None:
    """Hand out only pooled connections that are still open.

    When PostgreSQL restarts (or kills a backend), the server closes the socket of every pooled connection and
    asyncpg notices at once (the event loop reads the socket's end), so ``is_closed()`` answers without a round
    trip. A closed connection at checkout raises ``DisconnectionError``, on which the pool discards it and opens a
    fresh one in its place: the first request after a restart succeeds instead of failing on a stale connection.

    This replaces ``pool_pre_ping``, which costs a ``SELECT 1`` round trip on every checkout to catch the same
    thing. What it does not catch, a connection that breaks after checkout or a half-open socket (the peer
    vanished without closing it), fails that one transaction with :class:`DatabaseUnavailable` (HTTP 503 with
    ``Retry-After``; nothing half-written, the transaction is rolled back); SQLAlchemy then invalidates the whole
    pool, so every older connection is replaced on its next checkout.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver_connection = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the server closed this pooled connection")


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
