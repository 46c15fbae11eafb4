"""Schema migrations (Alembic, shipped inside the package) as plain async functions.

The same revisions run on SQLite and PostgreSQL; on SQLite, later revisions use Alembic's batch mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from chatkeep.store._errors import wrap_db_errors

__all__ = ["alembic_config", "current_revision", "downgrade", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (and at ``connection`` when given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database up to ``revision`` (default: the newest). Safe to run when already there."""
    await _run(engine, lambda connection: command.upgrade(alembic_config(connection), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the database back to ``revision`` (``"base"``: empty)."""
    await _run(engine, lambda connection: command.downgrade(alembic_config(connection), revision))


async def _run(engine: AsyncEngine, action: Callable[[Connection], None]) -> None:
    """Run a migration in one transaction.

    On PostgreSQL it acts as the system caller. On SQLite, foreign keys are switched off around it (which SQLite
    allows only outside a transaction): a migration that rebuilds a table (Alembic's batch mode) drops the old one,
    and with foreign keys on, that drop would first delete every row that cascades from it. They are checked
    before the transaction commits.
    """

    def _migrate(connection: Connection) -> None:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _pragma(connection, "PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if not sqlite:
                    # Migrations may move rows of every user: they act as the system (row-level security,
                    # revision 0003). Transaction-local, like every caller chatkeep sets.
                    connection.exec_driver_sql("SELECT set_config('chatkeep.system', 'on', true)")
                action(connection)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows that break foreign keys; nothing was changed")
        finally:
            if sqlite:
                _pragma(connection, "PRAGMA foreign_keys = ON")

    async with wrap_db_errors(), engine.connect() as conn:
        await conn.run_sync(_migrate)


def _pragma(connection: Connection, sql: str) -> None:
    # Straight to the driver, so that SQLAlchemy does not open a transaction first (PRAGMA foreign_keys is a
    # no-op inside one).
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with wrap_db_errors(), engine.connect() as conn:
        return await conn.run_sync(_current)
