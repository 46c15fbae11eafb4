"""Turn driver and SQLAlchemy exceptions into :mod:`chatkeep.errors`, always ``from`` the original.

This is the one place that knows what a database failure looks like. Everything above the store sees
:class:`DatabaseUnavailable` (retryable; HTTP 503 at the edge), :class:`Conflict`, :class:`InvalidInput` or
:class:`SchemaMissing`, never a driver exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc

from chatkeep.errors import ChatkeepError, Conflict, DatabaseUnavailable, InvalidInput, SchemaMissing, ValidationIssue

__all__ = ["is_unavailable", "wrap_db_errors"]

#: SQLSTATEs (or their class prefixes) that mean "the server cannot serve you right now", not "your statement is
#: wrong": class 08 (connection exception: refused, lost, ``connection does not exist``), 57P01-57P03 (the
#: server is shutting down, crashed, or starting up: ``CannotConnectNowError``…), 57P05 (idle session timeout)
#: and 53300 (too many connections). asyncpg reports them as ``PostgresError`` subclasses, which SQLAlchemy wraps
#: as a plain ``DBAPIError`` that is not always flagged ``connection_invalidated`` (a failed connect never is).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "57P05", "53300")
#: SQLSTATEs that mean "unavailable" only when raised while connecting (no statement ran): 55000
#: (object_not_in_prerequisite_state) is then PostgreSQL's "database … is not currently accepting connections",
#: a database closed with ``ALTER DATABASE … ALLOW_CONNECTIONS false`` (maintenance, a restore). Raised by a
#: statement, 55000 means something else (``currval`` before ``nextval``…): a bug, left to surface.
_REFUSED_ON_CONNECT_SQLSTATES = ("55000",)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc``, or the driver error it wraps, says the database cannot be reached right now.

    True for: a refused, reset or timed-out socket (``OSError``, which includes ``TimeoutError`` from a connect
    timeout); a pool that could not hand out a connection in time; a connection SQLAlchemy found broken
    (``connection_invalidated``, ``DisconnectionError``, the driver's ``InterfaceError`` such as asyncpg's
    "connection is closed"); the SQLSTATEs in :data:`_UNAVAILABLE_SQLSTATES`; and those in
    :data:`_REFUSED_ON_CONNECT_SQLSTATES` when no statement ran (a ``DBAPIError`` without one: a failed connect,
    or a commit, which never raises them). Follows ``orig`` and ``__cause__`` (never ``__context__``, which may be
    an unrelated earlier error).
    """
    seen: set[int] = set()
    connecting = False
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, sa_exc.TimeoutError, sa_exc.DisconnectionError, sa_exc.InterfaceError)):
            return True
        if isinstance(current, sa_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            connecting = connecting or current.statement is None
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate.startswith(_UNAVAILABLE_SQLSTATES) or (connecting and sqlstate in _REFUSED_ON_CONNECT_SQLSTATES)
        ):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


@asynccontextmanager
async def wrap_db_errors() -> AsyncIterator[None]:
    """Map database failures to chatkeep errors.

    A broken, refused or timed-out connection is :class:`DatabaseUnavailable` (retryable; see
    :func:`is_unavailable`), a constraint violation is a :class:`Conflict`, a value the database refuses is
    :class:`InvalidInput`, a missing table is :class:`SchemaMissing`. chatkeep's own errors pass; anything else
    (a bug) passes unchanged.
    """
    try:
        yield
    except ChatkeepError:
        raise
    except sa_exc.IntegrityError as exc:
        raise Conflict("The change conflicts with what is stored; nothing was written.") from exc
    except (sa_exc.OperationalError, sa_exc.ProgrammingError) as exc:
        if _missing_table(exc):
            raise SchemaMissing() from exc
        if isinstance(exc, sa_exc.ProgrammingError):
            raise
        # SQLite reports a locked or unreadable file as OperationalError: retryable too.
        raise DatabaseUnavailable("The database is unavailable; try again shortly.") from exc
    except sa_exc.DataError as exc:
        raise InvalidInput([ValidationIssue((), "the database refused a value in the request")]) from exc
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable("The database is unavailable; try again shortly.") from exc
        if _sqlstate(exc).startswith("22"):
            # class 22, data exception (a value too long, out of range, badly encoded): asyncpg's errors reach
            # here as a plain DBAPIError, not a DataError. The API checks values first; this is the backstop.
            raise InvalidInput([ValidationIssue((), "the database refused a value in the request")]) from exc
        raise


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else ""


def _missing_table(exc: sa_exc.DBAPIError) -> bool:
    # SQLite: "no such table: threads"; PostgreSQL (asyncpg): UndefinedTableError, 'relation "threads" does not exist'.
    text = str(exc.orig)
    return (
        "no such table" in text
        or "UndefinedTable" in type(exc.orig).__name__
        or ("relation" in text and "does not exist" in text)
    )
