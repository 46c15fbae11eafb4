"""Turn driver and SQLAlchemy exceptions into :mod:`chatkeep.errors`, always ``from`` the original.

This is the one place that knows what a database failure looks like. Everything above the store sees
:class:`DatabaseUnavailable` (retryable; HTTP 503 at the edge), :class:`DatabaseMisconfigured` (a connection that
can never succeed as configured: the database or role does not exist, a wrong password, a missing folder),
:class:`Conflict`, :class:`InvalidInput` or :class:`SchemaMissing`, never a driver exception.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from chatkeep.errors import (
    ChatkeepError,
    Conflict,
    DatabaseError,
    DatabaseMisconfigured,
    DatabaseUnavailable,
    InvalidInput,
    SchemaMissing,
    ValidationIssue,
)

__all__ = ["connect_error", "is_unavailable", "wrap_db_errors"]

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
    connecting = False
    for current in _chain(exc):
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
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``orig`` (SQLAlchemy's driver error) or else ``__cause__``; never ``__context__``,
    which may be an unrelated earlier error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


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
        if denied := _permission_denied(exc):
            raise denied from exc
        if isinstance(exc, sa_exc.ProgrammingError):
            raise
        # SQLite reports a locked or unreadable file as OperationalError: retryable too.
        raise DatabaseUnavailable(detail=f"the database is unavailable: {_first_line(exc.orig or exc)}") from exc
    except sa_exc.DataError as exc:
        raise InvalidInput([ValidationIssue((), "the database refused a value in the request")]) from exc
    except Exception as exc:
        if denied := _permission_denied(exc):
            raise denied from exc
        if is_unavailable(exc):
            cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
            raise DatabaseUnavailable(detail=f"the database is unavailable: {_first_line(cause)}") from exc
        if _sqlstate(exc).startswith("22"):
            # class 22, data exception (a value too long, out of range, badly encoded): asyncpg's errors reach
            # here as a plain DBAPIError, not a DataError. The API checks values first; this is the backstop.
            raise InvalidInput([ValidationIssue((), "the database refused a value in the request")]) from exc
        raise


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else ""


def _permission_denied(exc: BaseException) -> DatabaseMisconfigured | None:
    """SQLSTATE 42501 saying "permission denied" (not a row-level security policy's refusal, the same SQLSTATE):
    the role chatkeep connects as may not do what chatkeep needs, which no retry changes."""
    if _sqlstate(exc) != "42501":
        return None
    said = _first_line(getattr(exc, "orig", None) or exc)
    if "permission denied" not in said:
        return None
    return DatabaseMisconfigured(
        f"the database refused chatkeep's role: {said}. Connect as a role that owns chatkeep's database (CREATE "
        "DATABASE … OWNER <role>), or grant it what it lacks."
    )


def _missing_table(exc: sa_exc.DBAPIError) -> bool:
    # SQLite: "no such table: threads"; PostgreSQL (asyncpg): UndefinedTableError, 'relation "threads" does not exist'.
    text = str(exc.orig)
    return (
        "no such table" in text
        or "UndefinedTable" in type(exc.orig).__name__
        or ("relation" in text and "does not exist" in text)
    )


# -- opening a connection ----------------------------------------------------------------------------------------

#: SQLSTATEs a PostgreSQL server answers a login with that no retry will change: the database does not exist
#: (3D000), the role does not exist or pg_hba.conf has no entry for it (28000), a wrong password (28P01), no
#: CONNECT privilege (42501).
_MISCONFIGURED_ON_CONNECT: dict[str, str] = {
    "3D000": "Create it, or fix the database name in the database URL.",
    "28000": "Fix the user name in the database URL, or create the role (and allow it in pg_hba.conf).",
    "28P01": "Fix the password in the database URL.",
    "42501": "Grant the role CONNECT on the database, or connect as another role.",
}


def connect_error(exc: BaseException, url: URL, shown: str) -> DatabaseError:
    """What a failure to open a connection to ``url`` means, as a :class:`DatabaseMisconfigured` (no retry will
    help) or a :class:`DatabaseUnavailable` (retry later), whose ``detail`` names the database (``shown``: the URL
    with its password masked; host and port, or the file), the cause and what to do.

    Called (by :func:`chatkeep.store.engine.make_engine`'s connect hook) for every failed connect, when the URL is
    known, which the failures of later statements never need. A failure this does not recognise is
    ``DatabaseUnavailable``, as any failed connect was before, with the driver's own words.
    """
    password = url.password if isinstance(url.password, str) else None
    if url.get_backend_name() == "sqlite":
        return _sqlite_connect_error(exc, url, shown, password)
    socket_dir = url.query.get("host")  # libpq's ?host=/run/postgresql: a Unix socket's folder
    host = url.host or (socket_dir if isinstance(socket_dir, str) else "localhost")
    where = f"the PostgreSQL server at {host}:{url.port or 5432}"
    for current in _chain(exc):
        sqlstate = getattr(current, "sqlstate", None)
        said = _redact(_first_line(current), password)
        if sqlstate in _MISCONFIGURED_ON_CONNECT:
            hint = _MISCONFIGURED_ON_CONNECT[sqlstate]
            if sqlstate == "3D000" and url.database:
                owner = f' OWNER "{url.username}"' if url.username else ""
                hint = f'Create it (CREATE DATABASE "{url.database}"{owner}), or fix the database name in the URL.'
            return DatabaseMisconfigured(f"{where} refused the connection: {said} ({shown}). {hint}")
        if isinstance(sqlstate, str):  # the server answered, with something a later connect may not meet
            return DatabaseUnavailable(detail=f"{where} refuses connections right now: {said} ({shown}).")
        if isinstance(current, socket.gaierror):
            if current.errno == socket.EAI_AGAIN:
                return DatabaseUnavailable(
                    detail=f"cannot look up the host {url.host!r} right now ({current.strerror}) ({shown})."
                )
            return DatabaseMisconfigured(
                f"cannot find the host {url.host!r} of the database URL ({shown}): {current.strerror}. Fix the "
                "host name in the database URL."
            )
        if isinstance(current, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(current):
            # (a host with several addresses, ``localhost``, fails as one OSError listing each refusal)
            return DatabaseUnavailable(
                detail=f"cannot connect to {where}: connection refused ({shown}). Is PostgreSQL running there, and "
                "are the host and port in the database URL right?"
            )
        if isinstance(current, TimeoutError):
            return DatabaseUnavailable(detail=f"{where} did not answer in time ({shown}). Is the host right?")
        if isinstance(current, OSError):
            return DatabaseUnavailable(detail=f"cannot connect to {where}: {said} ({shown}).")
        if isinstance(current, (TypeError, ValueError)):
            # asyncpg refusing what the URL's query asked of it: ``connect() got an unexpected keyword argument
            # 'x'``, ``sslmode parameter must be one of …`` (its ClientConfigurationError is a ValueError).
            return DatabaseMisconfigured(
                f"the database URL ({shown}) has a parameter the PostgreSQL driver does not accept: {said}. Remove "
                "or fix it."
            )
    return DatabaseUnavailable(detail=f"cannot connect to {where}: {_redact(_first_line(exc), password)} ({shown}).")


def _sqlite_connect_error(exc: BaseException, url: URL, shown: str, password: str | None) -> DatabaseError:
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else None
    said = _redact(_first_line(orig or exc), password)
    if not url.database or url.database == ":memory:":
        return DatabaseUnavailable(detail=f"cannot open the in-memory SQLite database: {said}.")
    path = Path(url.database).expanduser().absolute()
    if "file is not a database" in said:
        return DatabaseMisconfigured(f"{path} is not a SQLite database. Fix the path in the database URL.")
    if "unable to open database file" in said:
        if not path.parent.is_dir():
            return DatabaseMisconfigured(
                f"cannot create the SQLite database {path}: the folder {path.parent} does not exist. Create it "
                f"(mkdir -p {path.parent}) or fix the path in the database URL."
            )
        if path.is_dir():
            return DatabaseMisconfigured(
                f"cannot open the SQLite database {path}: it is a folder. Name a file in the database URL."
            )
        return DatabaseMisconfigured(
            f"cannot open the SQLite database {path}: {said} (is the file, and its folder, readable and writable "
            "by this user?)."
        )
    return DatabaseUnavailable(detail=f"cannot open the SQLite database {path}: {said}.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _redact(text: str, password: str | None) -> str:
    """``text`` with the password masked, should a driver ever quote it (none is known to)."""
    return text.replace(password, "***") if password and len(password) >= 3 else text
