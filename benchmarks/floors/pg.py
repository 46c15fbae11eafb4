"""The floors' PostgreSQL access: asyncpg, a pool the size of chatkeep's, hand-written SQL, JSON decoded by
orjson inside the driver. No transaction where one statement suffices; one per write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from benchmarks.floors.shape import MESSAGE_COLUMNS, PART_COLUMNS, PART_INSERT_COLUMNS, iso_from_datetime

__all__ = ["PgStore"]

_MESSAGES = (
    f"SELECT {', '.join('m.' + c for c in MESSAGE_COLUMNS.split(', '))}, t.head_id "
    "FROM messages m JOIN threads t ON t.id = m.thread_id "
    "WHERE m.thread_id = $1 AND t.user_id = $2 AND (m.status IS NULL OR m.status <> 'streaming') ORDER BY m.seq"
)
_PARTS = f"SELECT {PART_COLUMNS} FROM parts WHERE thread_id = $1 ORDER BY message_id, part_order"
_HEAD = "SELECT head_id FROM threads WHERE id = $1 AND user_id = $2"
_BUMP = (
    "UPDATE threads SET message_seq = message_seq + 1, head_id = $3, updated_at = $4 "
    "WHERE id = $1 AND user_id = $2 RETURNING message_seq"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (thread_id, id, parent_id, seq, format, role, metadata, extra, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
)
_INSERT_PART = f"INSERT INTO parts ({PART_INSERT_COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 17))})"
_THREAD_COLUMNS = "id, title, status, custom, head_id, created_at, updated_at"
_FIRST_PAGE = f"SELECT {_THREAD_COLUMNS} FROM threads WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
_NEXT_PAGE = (
    f"SELECT {_THREAD_COLUMNS} FROM threads WHERE user_id = $1 AND (updated_at, id) < ($3, $4) "
    "ORDER BY updated_at DESC, id DESC LIMIT $2"
)


async def _init(conn: Any) -> None:
    await conn.set_type_codec(
        "json", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
    )
    # Bypass chatkeep's row-level security policies if they bind this role (they do not bind superusers).
    await conn.execute("SELECT set_config('chatkeep.system', 'on', false)")


def _same(value: Any) -> Any:
    return value


class PgStore:
    #: JSON columns arrive decoded and are encoded by the driver
    loads = staticmethod(_same)
    dumps = staticmethod(_same)
    stamp = staticmethod(iso_from_datetime)

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str) -> PgStore:
        # At most 20 connections, as chatkeep's default pool (10 open from the start).
        return cls(await asyncpg.create_pool(url, min_size=10, max_size=20, init=_init))

    async def close(self) -> None:
        await self.pool.close()

    async def messages(self, user: str, thread_id: str) -> tuple[str | None, Sequence[Any], Sequence[Any]] | None:
        """``(head_id, message rows, part rows)`` of the user's thread, or ``None`` if it is not theirs."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_MESSAGES, thread_id, user)
            if not rows:
                found = await conn.fetchrow(_HEAD, thread_id, user)
                return None if found is None else (found[0], [], [])
            parts = await conn.fetch(_PARTS, thread_id)
        return rows[0][8], rows, parts

    async def append(
        self,
        user: str,
        thread_id: str,
        message_id: str,
        parent_id: str | None,
        format: str,
        content: dict[str, Any],
        parts: list[tuple[Any, ...]],
    ) -> bool:
        """One transaction: take the next ``seq`` (locking the thread row), insert the message and its parts."""
        now = datetime.now(UTC)
        extra = {k: v for k, v in content.items() if k not in ("role", "parts", "metadata")} or None
        async with self.pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(_BUMP, thread_id, user, message_id, now)
            if seq is None:
                return False
            await conn.execute(
                _INSERT_MESSAGE, thread_id, message_id, parent_id, seq, format, content["role"],
                content.get("metadata"), extra, now,
            )  # fmt: skip
            if parts:
                await conn.executemany(_INSERT_PART, parts)
        return True

    async def threads(self, user: str, limit: int, after: tuple[str, str] | None) -> Sequence[Any]:
        async with self.pool.acquire() as conn:
            if after is None:
                return list(await conn.fetch(_FIRST_PAGE, user, limit))
            return list(await conn.fetch(_NEXT_PAGE, user, limit, datetime.fromisoformat(after[0]), after[1]))

    @staticmethod
    def cursor_stamp(value: Any) -> str:
        return str(value.isoformat())
