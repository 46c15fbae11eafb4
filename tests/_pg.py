"""A PostgreSQL server for the tests: the one named by CHATKEEP_TEST_POSTGRES_URL, else the local one on
127.0.0.1:5432, else a throwaway server from the ``pgserver`` package (PostgreSQL binaries from PyPI).

``CHATKEEP_TEST_POSTGRES_URL=pgserver`` forces the throwaway server. The tests never skip PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@contextmanager
def postgres_server(variable: str = "CHATKEEP_TEST_POSTGRES_URL") -> Iterator[str]:
    """Yield an admin URL of a running PostgreSQL server (one that may create databases): the one the environment
    ``variable`` names, else the local one, else a throwaway one (``variable=pgserver`` forces that). The
    benchmarks use it too, with their own variable."""
    explicit = os.environ.get(variable)
    if explicit and explicit != "pgserver":
        yield explicit
        return
    if not explicit and asyncio.run(_reachable(DEFAULT_URL)):
        yield DEFAULT_URL
        return
    # pgserver asks platformdirs for a runtime directory, which warns when XDG_RUNTIME_DIR is unset (as in CI).
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="chatkeep-run-"))
    import pgserver

    datadir = tempfile.mkdtemp(prefix="chatkeep-pg-")
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)
