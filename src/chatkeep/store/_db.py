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
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, ParamSpec, TypeVar, cast

from sqlalchemy import Select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatkeep.store._errors import wrap_db_errors
from chatkeep.store.engine import WRITE

__all__ = ["SYSTEM", "Caller", "Database", "set_caller", "uncancellable"]

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
        """A transaction that will write: on SQLite it takes the write lock at once (``BEGIN IMMEDIATE``)."""
        async with wrap_db_errors(), self.engine.connect() as conn:
            conn = await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                await set_caller(conn, caller)
                yield conn

    async def _fetch_mappings(self, conn: AsyncConnection, query: Select[Any]) -> Sequence[Mapping[str, Any]]:
        """The rows of ``query`` as mappings (column name → value), for reads of thousands of rows.

        On PostgreSQL the compiled statement goes straight to asyncpg, whose rows (``Record``) are mappings
        already: SQLAlchemy's per-row result processing cost about as much as the query itself when a thread of
        1,000 messages loads. This is safe for the columns chatkeep reads this way: asyncpg decodes ``json``
        with the codec SQLAlchemy's dialect registers on every connection, and ``timestamptz`` as aware UTC
        datetimes, exactly what the column types would return. Elsewhere, the usual path.
        """
        if self.dialect != "postgresql":
            rows: Sequence[Mapping[str, Any]] = (await conn.execute(query)).mappings().all()
            return rows
        compiled = query.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = [compiled.params[name] for name in compiled.positiontup or ()]
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        return cast("Sequence[Mapping[str, Any]]", await driver.fetch(str(compiled), *params))

    def _insert_ignoring_conflicts(self, table: Any) -> Any:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()
