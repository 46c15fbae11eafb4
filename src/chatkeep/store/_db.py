"""What every store class shares: an engine and its two kinds of transaction, each scoped to a caller.

Every transaction says whom it acts for: a user id, or :data:`SYSTEM` for the service's own bookkeeping (the
stream sweeper, migrations, writes keyed by ids only the service knows). On PostgreSQL the caller is set in the
transaction (``chatkeep.user_id``, or ``chatkeep.system = 'on'``) before anything else runs, and row-level
security policies (migration 0003) let a transaction see and touch only its user's rows: a query that forgets
its user filter still cannot reach another user's thread. A transaction that sets neither sees nothing. SQLite
has no row-level security; there the explicit filters in every query are the only guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, ParamSpec, TypeVar, cast

from sqlalchemy import Engine, Select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from chatkeep.errors import ChatkeepError, DatabaseUnavailable
from chatkeep.store._errors import wrap_db_errors
from chatkeep.store.engine import WRITE

__all__ = ["SYSTEM", "Caller", "Database", "gc_paused", "set_caller", "uncancellable"]

log = logging.getLogger("chatkeep.store")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def uncancellable(method: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """Run a write to its end (COMMIT or ROLLBACK) before a cancellation of its caller takes effect.

    A write cancelled halfway leaves its connection in a state the pool cannot clean up: on SQLite the connection
    kept the write lock and every other writer waited out ``busy_timeout`` (seconds of "database is locked").
    Cancellation is routine here (a stopped reply, its checkpoints, a disconnected client, shutdown), so every
    store method that writes runs in a task of its own, shielded. A caller cancelled meanwhile waits for the
    write to end and then raises ``CancelledError``: whoever awaits it knows the write is over, so a later write
    (the reply's final store after its last checkpoint) can never be overtaken by an earlier one.
    """

    @functools.wraps(method)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        task = asyncio.ensure_future(method(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            while not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.warning("a write whose caller was cancelled failed: %r", exc)
            raise

    return run


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic garbage collection inside: for synchronous code that builds many objects which all stay alive
    (a loaded thread's messages and parts). Each collection the allocations trigger rescans every one of them,
    promotes them all, and rescans them again in the older generations: a third of the time of loading a
    10,000-message thread, growing faster than the thread. Synchronous code only (no ``await`` inside): nothing
    else runs meanwhile, so nothing else goes without collection. Leaves a collector someone else disabled off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _System(enum.Enum):
    SYSTEM = "system"


#: The caller of the service's own bookkeeping, which acts across users (see the module docstring).
SYSTEM: Final = _System.SYSTEM

#: Whom a transaction acts for: a user id, or :data:`SYSTEM`.
Caller = str | _System

_SET_CALLER = text(
    "SELECT set_config('chatkeep.user_id', :user_id, true), set_config('chatkeep.system', :system, true)"
)


async def set_caller(conn: AsyncConnection, caller: Caller) -> None:
    """Scope the open transaction on ``conn`` to ``caller`` (a no-op on SQLite). ``set_config(..., true)`` is
    transaction-local, so a pooled connection never carries one caller's scope into the next transaction."""
    if conn.dialect.name != "postgresql":
        return
    if caller is SYSTEM:
        await conn.execute(_SET_CALLER, {"user_id": "", "system": "on"})
    else:
        await conn.execute(_SET_CALLER, {"user_id": caller, "system": "off"})


#: How long a write on SQLite waits for the process's other writers (as long as SQLite's own ``busy_timeout``).
_SQLITE_WRITER_WAIT_S = 10.0

#: One lock per SQLite engine (and event loop): the writers of this process take turns here, see ``_write``.
_sqlite_writers: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _sqlite_writer_lock(engine: AsyncEngine) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    found = _sqlite_writers.get(engine.sync_engine)
    if found is None or found[0] is not loop:  # an asyncio.Lock belongs to one event loop
        found = (loop, asyncio.Lock())
        _sqlite_writers[engine.sync_engine] = found
    return found[1]


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def _read(self, caller: Caller) -> AsyncIterator[AsyncConnection]:
        async with wrap_db_errors(), self.engine.connect() as conn, conn.begin():
            await set_caller(conn, caller)
            yield conn

    @asynccontextmanager
    async def _write(self, caller: Caller) -> AsyncIterator[AsyncConnection]:
        """A transaction that will write: on SQLite it takes the write lock at once (``BEGIN IMMEDIATE``).

        On SQLite the writers of this process also queue on an asyncio lock first, so at most one of them holds
        (or waits for) the database's write lock: pooled connections that all wait in ``BEGIN IMMEDIATE`` are
        woken by SQLite's busy handler, which sleeps up to 100 ms between tries, so a burst of writers left most
        of the time idle. Other processes still wait in ``busy_timeout``.
        """
        if self.dialect == "sqlite":
            lock = _sqlite_writer_lock(self.engine)
            try:
                async with asyncio.timeout(_SQLITE_WRITER_WAIT_S):
                    await lock.acquire()
            except TimeoutError:
                raise DatabaseUnavailable("The database is unavailable; try again shortly.") from None
            try:
                async with self._write_transaction(caller) as conn:
                    yield conn
            finally:
                lock.release()
        else:
            async with self._write_transaction(caller) as conn:
                yield conn

    @asynccontextmanager
    async def _write_transaction(self, caller: Caller) -> AsyncIterator[AsyncConnection]:
        async with wrap_db_errors(), self.engine.connect() as conn:
            conn = await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                await set_caller(conn, caller)
                yield conn

    @asynccontextmanager
    async def _pg_driver(self) -> AsyncIterator[Any]:
        """PostgreSQL only: a pooled connection's asyncpg connection, outside any transaction, for a read or a
        write that is one pipeline of statements (``fetchmany``: one round trip, one implicit transaction, atomic).
        The caller must set the caller scope itself, in an earlier statement of that pipeline (see
        :meth:`ChatStore._insert_new_pg`, :meth:`ChatStore._load_owned_pg`).

        It is checked out of the pool as a bare pooled connection (``raw_connection``: the pool's checkout
        checks apply, but no ``Connection`` is built, which halved the cost of checkout and return). SQLAlchemy
        never began a transaction on it, so returning it costs nothing. Driver errors are mapped as
        :func:`wrap_db_errors` maps SQLAlchemy's: a lost connection is invalidated (never returned to the pool)
        and is :class:`DatabaseUnavailable`, a constraint violation is a ``Conflict``, a refused value
        ``InvalidInput``.
        """
        async with wrap_db_errors():
            pooled = await self.engine.raw_connection()
            try:
                driver: Any = pooled.driver_connection
                yield driver
            except (ChatkeepError, sa_exc.SQLAlchemyError):
                raise
            except Exception as exc:
                if driver.is_closed():
                    await greenlet_spawn(pooled.invalidate, exc)
                    raise sa_exc.DBAPIError(None, None, exc, connection_invalidated=True) from exc
                if str(getattr(exc, "sqlstate", None) or "").startswith("23"):
                    raise sa_exc.IntegrityError(None, None, exc) from exc
                raise
            finally:
                # the pool's return runs SQLAlchemy's synchronous adapter code, which must run in a greenlet
                await greenlet_spawn(pooled.close)

    async def _fetch_mappings(self, conn: AsyncConnection, query: Select[Any]) -> Sequence[Mapping[str, Any]]:
        """The rows of ``query`` as mappings (column name → value), for reads of thousands of rows.

        On PostgreSQL the compiled statement goes straight to asyncpg, whose rows (``Record``) are mappings
        already: SQLAlchemy's per-row result processing cost about as much as the query itself when a thread of
        1,000 messages loads. This is safe for the columns chatkeep reads this way: asyncpg decodes ``json``
        with the codec registered on every connection (:func:`chatkeep.store.engine.make_engine`), and
        ``timestamptz`` as aware UTC datetimes, exactly what the column types would return. Elsewhere, the usual
        path. On PostgreSQL the records also index by position.
        """
        if self.dialect != "postgresql":
            rows: Sequence[Mapping[str, Any]] = (await conn.execute(query)).mappings().all()
            return rows
        sql, params = self._compile_pg(query)
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        return cast("Sequence[Mapping[str, Any]]", await driver.fetch(sql, *params))

    def _compile_pg(self, query: Any) -> tuple[str, list[Any]]:
        """PostgreSQL only: ``query`` as asyncpg runs it, its SQL (``$1``…) and its values in that order.

        Compiling costs about 0.4 ms a statement, its cache key a sixth of that: like SQLAlchemy's own execute
        path (which the callers bypass), reuse the compiled form of a statement of the same shape, kept in the
        engine's compiled cache (a bounded LRU) under a key of our own, and take this statement's values from
        its cache key. Not for statements with values rendered into the SQL (IN lists, literal_execute).
        """
        cache_key = query._generate_cache_key()
        cache = self.engine.sync_engine._compiled_cache
        compiled: Any
        if cache is None or cache_key is None or any(b.expanding or b.literal_execute for b in cache_key.bindparams):
            compiled = query.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
            values = compiled.params
        else:
            entry = ("chatkeep._fetch_mappings", cache_key.key)
            compiled = cache.get(entry)
            if compiled is None:
                compiled = query.compile(
                    dialect=self.engine.dialect, cache_key=cache_key, compile_kwargs={"render_postcompile": True}
                )
                cache[entry] = compiled
            values = compiled.construct_params(extracted_parameters=cache_key.bindparams)
        return str(compiled), [values[name] for name in compiled.positiontup or ()]

    def _insert_ignoring_conflicts(self, table: Any) -> Any:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()
