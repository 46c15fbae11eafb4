"""Turn driver and SQLAlchemy exceptions into :mod:`chatkeep.errors`, always ``from`` the original."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc

from chatkeep.errors import ChatkeepError, Conflict, DatabaseUnavailable, InvalidInput, SchemaMissing, ValidationIssue

__all__ = ["wrap_db_errors"]


@asynccontextmanager
async def wrap_db_errors() -> AsyncIterator[None]:
    """Map database failures to chatkeep errors.

    A broken or refused connection is :class:`DatabaseUnavailable` (retryable), a constraint violation is a
    :class:`Conflict`, and a value the database refuses is :class:`InvalidInput`. chatkeep's own errors pass.
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
        raise DatabaseUnavailable("The database is unavailable; try again shortly.") from exc
    except sa_exc.DataError as exc:
        raise InvalidInput([ValidationIssue((), "the database refused a value in the request")]) from exc
    except (sa_exc.InterfaceError, sa_exc.DisconnectionError, OSError) as exc:
        raise DatabaseUnavailable("The database is unavailable; try again shortly.") from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable("The database connection was lost; try again shortly.") from exc
        raise


def _missing_table(exc: sa_exc.DBAPIError) -> bool:
    # SQLite: "no such table: threads"; PostgreSQL (asyncpg): UndefinedTableError, 'relation "threads" does not exist'.
    text = str(exc.orig)
    return (
        "no such table" in text
        or "UndefinedTable" in type(exc.orig).__name__
        or ("relation" in text and "does not exist" in text)
    )
