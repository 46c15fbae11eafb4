"""The databases the benchmarks run on: a PostgreSQL database and a SQLite file per scenario, each created from a
migrated template so a scenario starts from chatkeep's real, current schema in well under a second.

PostgreSQL: the server named by ``CHATKEEP_BENCH_POSTGRES_URL`` (an admin URL that may create roles and databases),
else the one on ``127.0.0.1:5432`` (user ``postgres``), else a throwaway server from the ``pgserver`` package. All
databases are named ``bench_*`` and dropped at the end. chatkeep connects as an ordinary role (``bench_chatkeep``),
as the README recommends for production, so PostgreSQL's row-level security applies to it; the floors and the
harness (seeding, checks) connect as the admin role.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
from sqlalchemy.engine import make_url
from tests._pg import postgres_server

__all__ = ["Backend", "BenchDatabase", "DatabaseFactory", "postgres_admin_url"]

Backend = Literal["postgres", "sqlite"]

CHATKEEP_ROLE = "bench_chatkeep"
TEMPLATE = "bench_template"


@contextlib.contextmanager
def postgres_admin_url() -> Iterator[str]:
    """An admin URL of a running PostgreSQL server (see the module docstring): found as the tests find theirs."""
    with postgres_server("CHATKEEP_BENCH_POSTGRES_URL") as url:
        yield url


def _with(url: str, **changes: Any) -> str:
    return make_url(url).set(**changes).render_as_string(hide_password=False)


@dataclass(frozen=True)
class BenchDatabase:
    """One scenario's database. ``chatkeep_url`` is what chatkeep is given; ``admin_url``/``path`` are for the
    floors and the harness."""

    backend: Backend
    name: str
    chatkeep_url: str
    #: PostgreSQL: the admin role's URL to this database; SQLite: ``sqlite:///<path>``
    admin_url: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.backend == "postgres" else "SQLite"

    async def pg(self, *, bulk: bool = False) -> asyncpg.Connection:
        """A raw admin connection (PostgreSQL), acting as chatkeep's system caller where policies apply. With
        ``bulk``, triggers (foreign key checks) are skipped where the role may do that: seeded rows are consistent
        by construction, and checking 500,000 of them one by one takes longer than the benchmark itself."""
        conn = await asyncpg.connect(self.admin_url)
        await conn.execute("SELECT set_config('chatkeep.system', 'on', false)")
        if bulk:
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("SET session_replication_role = replica")
        return conn


class DatabaseFactory:
    """Creates (and at the end drops) the scenario databases of one run."""

    def __init__(self, admin_url: str | None, workdir: Path) -> None:
        self.admin_url = admin_url
        self.workdir = workdir
        self.chatkeep_role: str | None = None
        self._pg_names: list[str] = []
        self._pg_template_ready = False
        self._sqlite_template: Path | None = None
        self.postgres_version = ""

    # -- PostgreSQL -----------------------------------------------------------------------------------------

    async def _admin(self) -> asyncpg.Connection:
        assert self.admin_url is not None, "PostgreSQL is not configured"
        return await asyncpg.connect(self.admin_url)

    async def _prepare_postgres(self) -> None:
        if self._pg_template_ready:
            return
        conn = await self._admin()
        try:
            self.postgres_version = str(await conn.fetchval("SHOW server_version"))
            await self._drop_leftovers(conn)
            role = CHATKEEP_ROLE
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                if not exists:
                    await conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
                self.chatkeep_role = role
            except asyncpg.PostgresError:
                self.chatkeep_role = None  # cannot create roles: chatkeep connects as the admin role
            owner = f" OWNER {self.chatkeep_role}" if self.chatkeep_role else ""
            await conn.execute(f"CREATE DATABASE {TEMPLATE}{owner}")
        finally:
            await conn.close()
        await _migrate(self._chatkeep_url(TEMPLATE))
        self._pg_template_ready = True

    async def _drop_leftovers(self, conn: asyncpg.Connection) -> None:
        """Drop the ``bench_*`` databases an interrupted earlier run left behind."""
        names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')

    def _chatkeep_url(self, database: str) -> str:
        assert self.admin_url is not None
        changes: dict[str, Any] = {"database": database}
        if self.chatkeep_role:
            changes["username"] = self.chatkeep_role
            changes["password"] = None
        return _with(self.admin_url, **changes)

    async def postgres(self, scenario: str) -> BenchDatabase:
        await self._prepare_postgres()
        name = f"bench_{scenario}"
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            owner = f" OWNER {self.chatkeep_role}" if self.chatkeep_role else ""
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}{owner}')
        finally:
            await conn.close()
        self._pg_names.append(name)
        assert self.admin_url is not None
        return BenchDatabase("postgres", name, self._chatkeep_url(name), _with(self.admin_url, database=name))

    # -- SQLite ---------------------------------------------------------------------------------------------

    async def sqlite(self, scenario: str) -> BenchDatabase:
        if self._sqlite_template is None:
            template = self.workdir / "template.db"
            await _migrate(f"sqlite:///{template}")
            self._sqlite_template = template
        path = self.workdir / f"{scenario}.db"
        _remove_sqlite(path)
        shutil.copyfile(self._sqlite_template, path)
        url = f"sqlite:///{path}"
        return BenchDatabase("sqlite", scenario, url, url, path)

    async def create(self, backend: Backend, scenario: str) -> BenchDatabase:
        return await (self.postgres(scenario) if backend == "postgres" else self.sqlite(scenario))

    # -- cleanup --------------------------------------------------------------------------------------------

    async def drop(self, database: BenchDatabase) -> None:
        if database.backend == "sqlite":
            assert database.path is not None
            _remove_sqlite(database.path)
            return
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def close(self) -> None:
        if self.admin_url is None or not self._pg_template_ready:
            return
        conn = await self._admin()
        try:
            for name in [*self._pg_names, TEMPLATE]:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _migrate(url: str) -> None:
    """Bring a database to chatkeep's newest schema with chatkeep's own migrations."""
    from chatkeep.store.engine import make_engine
    from chatkeep.store.migrate import upgrade

    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def pg_connection(database: BenchDatabase, *, bulk: bool = False) -> AsyncIterator[asyncpg.Connection]:
    conn = await database.pg(bulk=bulk)
    try:
        yield conn
    finally:
        await conn.close()
