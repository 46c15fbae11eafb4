"""The floors' SQLite access: the standard library's ``sqlite3`` called directly on the event loop's thread (a
local file answers in microseconds, so no thread hop), one connection, chatkeep's pragmas, ``BEGIN IMMEDIATE``
per write."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from benchmarks.floors.shape import MESSAGE_COLUMNS, PART_COLUMNS, PART_INSERT_COLUMNS, iso_from_sqlite

__all__ = ["SqliteStore"]

_MESSAGES = (
    f"SELECT {', '.join('m.' + c for c in MESSAGE_COLUMNS.split(', '))}, t.head_id "
    "FROM messages m JOIN threads t ON t.id = m.thread_id "
    "WHERE m.thread_id = ? AND t.user_id = ? AND (m.status IS NULL OR m.status <> 'streaming') ORDER BY m.seq"
)
_PARTS = f"SELECT {PART_COLUMNS} FROM parts WHERE thread_id = ? ORDER BY message_id, part_order"
_HEAD = "SELECT head_id FROM threads WHERE id = ? AND user_id = ?"
_BUMP = (
    "UPDATE threads SET message_seq = message_seq + 1, head_id = ?, updated_at = ? "
    "WHERE id = ? AND user_id = ? RETURNING message_seq"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (thread_id, id, parent_id, seq, format, role, metadata, extra, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PART = f"INSERT INTO parts ({PART_INSERT_COLUMNS}) VALUES ({', '.join('?' for _ in range(16))})"
_THREAD_COLUMNS = "id, title, status, custom, head_id, created_at, updated_at"
_FIRST_PAGE = f"SELECT {_THREAD_COLUMNS} FROM threads WHERE user_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
_NEXT_PAGE = (
    f"SELECT {_THREAD_COLUMNS} FROM threads WHERE user_id = ? AND (updated_at, id) < (?, ?) "
    "ORDER BY updated_at DESC, id DESC LIMIT ?"
)


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class SqliteStore:
    loads = staticmethod(orjson.loads)
    dumps = staticmethod(_dumps)
    stamp = staticmethod(iso_from_sqlite)

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 10000"):
            self.conn.execute(f"PRAGMA {pragma}")

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        return cls(url.removeprefix("sqlite:///"))

    async def close(self) -> None:
        self.conn.close()

    async def messages(self, user: str, thread_id: str) -> tuple[str | None, Sequence[Any], Sequence[Any]] | None:
        rows = self.conn.execute(_MESSAGES, (thread_id, user)).fetchall()
        if not rows:
            found = self.conn.execute(_HEAD, (thread_id, user)).fetchone()
            return None if found is None else (found[0], [], [])
        parts = self.conn.execute(_PARTS, (thread_id,)).fetchall()
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
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        extra = {k: v for k, v in content.items() if k not in ("role", "parts", "metadata")} or None
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(_BUMP, (message_id, now, thread_id, user)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return False
            conn.execute(
                _INSERT_MESSAGE,
                (thread_id, message_id, parent_id, row[0], format, content["role"], _dumps(content.get("metadata")),
                 _dumps(extra), now, now),
            )  # fmt: skip
            if parts:
                conn.executemany(_INSERT_PART, parts)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True

    async def threads(self, user: str, limit: int, after: tuple[str, str] | None) -> Sequence[Any]:
        if after is None:
            return self.conn.execute(_FIRST_PAGE, (user, limit)).fetchall()
        return self.conn.execute(_NEXT_PAGE, (user, after[0], after[1], limit)).fetchall()

    @staticmethod
    def cursor_stamp(value: Any) -> str:
        return str(value)
