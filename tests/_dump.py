"""Every row of every table, to prove that a refused request stored and changed nothing.

The tables come from the schema's own metadata (``chatkeep.store.models``), so a table added later is compared
too without touching the tests. Read in a system transaction, which sees every user's rows (on PostgreSQL,
row-level security hides them all from a transaction that does not say whom it acts for).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from chatkeep.store.models import Base
from tests.conftest import system_transaction

__all__ = ["Dump", "dump_tables", "rows_of_user"]

Dump = dict[str, list[dict[str, Any]]]


async def dump_tables(engine: AsyncEngine) -> Dump:
    """``{table: [row as a dict, …]}`` for every table, rows in primary key order."""
    out: Dump = {}
    async with system_transaction(engine) as conn:
        for table in Base.metadata.sorted_tables:
            result = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [dict(row._mapping) for row in result]
    return out


def rows_of_user(dump: Dump, user_id: str) -> Dump:
    """The rows of ``dump`` that belong to one user: their threads and every row that hangs off those threads."""
    threads = {row["id"] for row in dump["threads"] if row["user_id"] == user_id}
    streams = {row["id"] for row in dump["streams"] if row["thread_id"] in threads}
    out: Dump = {}
    for name, rows in dump.items():
        columns = Base.metadata.tables[name].c
        if name == "threads":
            out[name] = [row for row in rows if row["id"] in threads]
        elif "thread_id" in columns:
            out[name] = [row for row in rows if row["thread_id"] in threads]
        elif "stream_id" in columns:
            out[name] = [row for row in rows if row["stream_id"] in streams]
        else:
            raise AssertionError(f"rows_of_user does not know whose rows {name!r} holds: teach it")
    return out
