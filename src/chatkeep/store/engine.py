"""Database URLs and engines: what users paste in, what SQLAlchemy needs.

Nothing connects at import time. :func:`make_engine` is the one place engines are built, so every engine gets
the same per-dialect setup (SQLite pragmas and write locking; PostgreSQL pool sizing, connect timeout and the
check that drops pooled connections the server closed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chatkeep.errors import DatabaseMisconfigured
from chatkeep.store._errors import connect_error

__all__ = ["WRITE", "display_database_url", "json_dumps", "json_loads", "make_engine", "normalize_database_url"]

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
    ``sqlite+aiosqlite:///path``. A bare file path is taken as a SQLite file. A URL that is not one, or names
    another database, is :class:`~chatkeep.errors.DatabaseMisconfigured` (its message masks the password).
    """
    text = raw.strip()
    if "://" not in text:
        text = f"sqlite:///{text}"
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        why = "its port is not a number" if isinstance(exc, ValueError) else "it does not parse as one"
        raise DatabaseMisconfigured(
            f"the database URL {_mask_unparsed(raw)!r} is not valid: {why}. Expected postgres://user:password@"
            "host:port/database or sqlite:///path/to/file.db."
        ) from None
    if problem := _invalid_address(url):
        raise DatabaseMisconfigured(f"the database URL {display_database_url(url)!r} is not valid: {problem}.")
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
    raise DatabaseMisconfigured(
        f"unsupported database {backend!r} in the database URL {display_database_url(url)}: use PostgreSQL "
        "(postgres://…) or SQLite (sqlite:///path)."
    )


def _invalid_address(url: URL) -> str | None:
    if url.port is not None and not 0 < url.port < 65536:
        return f"its port {url.port} is out of range"
    if url.host is not None and ("[" in url.host or "]" in url.host):  # SQLAlchemy strips a closed [IPv6]
        return f"its host {url.host!r} is not a host name or address"
    return None


def display_database_url(url: str | URL) -> str:
    """The URL as it may be shown and logged: the password masked (``***``), the driver left out, a SQLite file
    as its absolute path. Text that does not parse as a URL has anything between ``:`` and ``@`` masked."""
    if isinstance(url, str):
        try:
            url = make_url(text := url if "://" in url else f"sqlite:///{url}")
        except (ArgumentError, ValueError):
            return _mask_unparsed(text)
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database and url.database != ":memory:":
        return f"sqlite:///{Path(url.database).expanduser().absolute()}"
    return url.set(drivername=backend).render_as_string(hide_password=True)


def _mask_unparsed(text: str) -> str:
    # scheme://user:secret@host… → scheme://user:***@host…, on text SQLAlchemy could not parse (hand-written:
    # no parser takes what is not a URL; the last ``@`` ends the credentials, as in SQLAlchemy's own pattern)
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", text.strip())


def json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits: orjson refuses them, the standard library does not
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


#: Maps every byte to ``1`` if it is an ASCII digit, else to ``0``: a text holds a run of 19 digits exactly when
#: its translation holds :data:`_LONG_RUN` (``bytes.translate`` and ``in`` run in C; a regular expression such as
#: ``\d{19}`` took four times as long as orjson's whole parse).
_DIGITS = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
#: Integer literals orjson may not keep exact start at 19 digits: it parses integers beyond 64 bits as floats,
#: silently (from 20 digits above ``2**64 - 1``, from 19 after a minus sign below ``-2**63``).
_LONG_RUN = b"1" * 19


def json_loads(text: Any) -> Any:
    """``json.loads``, exactly (same values, same key order), but with orjson where that gives the same result.

    orjson parses about four times faster than the standard library, and loading a thread decodes thousands of
    JSON columns (a seventh of the CPU of a load). It parses every JSON text ``json.loads`` does to the same
    values (floats are correctly rounded by both), except integers beyond 64 bits, which it turns into floats:
    a text with a run of 19 digits or more anywhere (strings included: a false match only costs the slower
    parser) goes to the standard library. So do the texts orjson refuses and ``json.loads`` takes (``1e400``,
    lone surrogates): its error sends them there too.
    """
    if isinstance(text, str):
        data = text.encode(errors="surrogatepass")
    elif isinstance(text, bytes):
        data = text
    else:  # what json.loads refuses, refused the same way (SQLAlchemy's SQLite JSON type expects its TypeError)
        return json.loads(text)
    if _LONG_RUN not in data.translate(_DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def make_engine(url: str | URL, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` (normalized with :func:`normalize_database_url` when given as text).

    On PostgreSQL at most ``pool_size`` connections open, and they stay open; a burst beyond waits for one (up to
    :data:`POOL_TIMEOUT_S`). No overflow: SQLAlchemy closes an overflow connection when it is returned, so under
    a steady load above ``pool_size`` (32 clients appending) connections were opened and closed over and over,
    and opening one (TLS negotiation, codec setup) cost more than the queries it ran.
    """
    url = normalize_database_url(url) if isinstance(url, str) else url
    # SQLAlchemy decodes JSON columns with ``json_deserializer`` on both databases (on PostgreSQL it is the codec
    # of asyncpg's ``json`` type, so rows read straight from the driver are decoded by it too).
    common: dict[str, Any] = {
        "json_serializer": json_dumps,
        "json_deserializer": json_loads,
        "echo": echo,
    }
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            engine = create_async_engine(url, poolclass=StaticPool, **common)
        else:
            engine = create_async_engine(url, **common)
        _setup_sqlite(engine, url)
        _explain_failed_connects(engine, url)
        return engine
    connect_args: dict[str, Any] = {} if "timeout" in url.query else {"timeout": CONNECT_TIMEOUT_S}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        pool_recycle=1800,
        connect_args=connect_args,
        **common,
    )
    _setup_postgresql(engine)
    _setup_json_codec(engine)
    _explain_failed_connects(engine, url)
    return engine


def _explain_failed_connects(engine: AsyncEngine, url: URL) -> None:
    """Raise a failed connect as :func:`~chatkeep.store._errors.connect_error` explains it: a
    :class:`~chatkeep.errors.DatabaseMisconfigured` or :class:`~chatkeep.errors.DatabaseUnavailable` naming the
    database (password masked), the cause and what to do. Only here are the URL and the failure both known.

    SQLAlchemy has no event for a failed connect, so this wraps the engine's own dialect's ``connect``, the last
    step of every new connection (after the ``do_connect`` listeners, which may still change its arguments: a
    listener that connected itself would silence those registered after it, such as one that sets a fresh token).
    """
    shown = display_database_url(url)
    dialect = engine.sync_engine.dialect
    connect = dialect.connect

    def explained_connect(*cargs: Any, **cparams: Any) -> Any:
        try:
            return connect(*cargs, **cparams)
        except Exception as exc:
            raise connect_error(exc, url, shown) from exc

    dialect.connect = explained_connect  # type: ignore[method-assign]


def _setup_json_codec(engine: AsyncEngine) -> None:
    """Decode ``json`` values straight from asyncpg's bytes with :func:`json_loads`.

    SQLAlchemy's dialect registers a codec on every new connection that decodes the bytes to ``str`` and calls
    ``json_deserializer``, which would encode it again for the digit scan: registered after it (a ``connect``
    listener of the engine runs after the dialect's own), this one skips both steps and a Python call per value.
    The encoder stays SQLAlchemy's (it sends the text ``json_serializer`` made).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(
            lambda driver: driver.set_type_codec(
                "json", encoder=str.encode, decoder=json_loads, schema="pg_catalog", format="binary"
            )
        )


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


def _setup_sqlite(engine: AsyncEngine, url: URL) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in (
                "PRAGMA foreign_keys = ON",
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA busy_timeout = 10000",
            ):
                cursor.execute(pragma)
        except Exception as exc:  # the first statement on a file finds out that it is not a database
            cursor.close()
            dbapi_connection.close()  # (the pool does not close a connection its connect listeners fail)
            raise connect_error(exc, url, display_database_url(url)) from exc
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")
