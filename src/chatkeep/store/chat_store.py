"""``ChatStore``: threads and their message trees, in domain verbs, on SQLite or PostgreSQL.

Guarantees every method gives:

* **Scoped to a user.** Every method takes the caller's ``user_id`` and every statement is filtered by it; a
  thread of another user raises :class:`ThreadNotFound`, exactly like a missing one.
* **One transaction per call.** A message and all its parts are written together or not at all. Writes to one
  thread are serialized (the thread row is locked on PostgreSQL; SQLite takes its write lock up front).
* **Parents before children.** A message's parent must already be in the thread; ``seq`` (the order key) only
  grows, so listing by ``seq`` always lists parents first.
* **Idempotent upserts.** Writing a message id again replaces its content and keeps its place in the tree.
* **Nothing is lost.** Content comes back key for key as written (see :mod:`chatkeep.store.mapping`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final, cast

import asyncpg
import orjson
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy import (
    cast as cast_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from chatkeep.errors import (
    InvalidInput,
    InvalidMessage,
    MessageNotFound,
    ParentNotFound,
    ThreadNotFound,
    TooManyStreams,
    ValidationIssue,
)
from chatkeep.protocol.ids import generate_id
from chatkeep.protocol.messages import find_forbidden_characters, is_ai_sdk_format, parse_ui_message_content
from chatkeep.store._db import SYSTEM, Database, gc_paused, uncancellable
from chatkeep.store.engine import json_dumps, make_engine
from chatkeep.store.mapping import (
    PART_COLUMNS,
    PART_READ_COLUMNS,
    content_to_message_columns,
    message_content,
    part_reader,
)
from chatkeep.store.models import MessageRow, PartRow, StreamRow, ThreadRow
from chatkeep.store.records import MessageTree, Page, StoredMessage, Thread, ThreadStatus

__all__ = ["DEFAULT_FORMAT", "UNSET", "ChatStore", "MessageWrite", "NewStream", "admit_stream", "insert_stream"]

#: The format of messages chatkeep writes itself (assistant-ui's name for the ai 6/7 UIMessage shape).
DEFAULT_FORMAT: Final = "ai-sdk/v6"
MAX_PAGE: Final = 1000


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave as it is" for optional arguments where ``None`` is a meaningful value.
UNSET: Final = _Unset()

_T = cast(Table, ThreadRow.__table__)
_M = cast(Table, MessageRow.__table__)
_P = cast(Table, PartRow.__table__)
_S = cast(Table, StreamRow.__table__)
_THREAD_COLUMNS = (
    _T.c.id, _T.c.user_id, _T.c.title, _T.c.status, _T.c.custom, _T.c.head_id, _T.c.local_id,
    _T.c.created_at, _T.c.updated_at,
)  # fmt: skip
_MESSAGE_COLUMNS = (
    _M.c.id, _M.c.thread_id, _M.c.parent_id, _M.c.format, _M.c.role, _M.c.metadata, _M.c.content, _M.c.extra,
    _M.c.seq, _M.c.status, _M.c.created_at, _M.c.updated_at,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MessageWrite:
    """One message for :meth:`ChatStore.write_messages`: ``content`` is the UIMessage without ``id``."""

    message_id: str
    parent_id: str | None
    content: Mapping[str, Any]
    #: store it as a new version of the stored message with this id (see :meth:`ChatStore.edit_message`)
    edit: bool = False


@dataclass(frozen=True, slots=True)
class NewStream:
    """An ``active`` stream to register: the reply ``message_id`` (to go under ``parent_id``) that the process
    ``owner`` is generating (see :class:`chatkeep.store.streams.StreamLog`). With ``max_active``, the write that
    registers it is refused (:class:`TooManyStreams`, nothing written) when the user already has that many active
    streams (see :func:`admit_stream`)."""

    id: str
    message_id: str
    owner: str
    parent_id: str | None = None
    max_active: int = 0


#: The first of the two keys of the transaction-scoped advisory lock that serializes one user's stream admissions
#: on PostgreSQL (the second is a hash of the user id): a key space of chatkeep's own, apart from other users of
#: advisory locks in the database ("chkp").
_ADMISSION_LOCKS: Final = 0x63686B70


def _active_streams(user_id: Any) -> Any:
    """How many active streams the user has, in every process (a scalar query)."""
    return (
        select(func.count())
        .select_from(_S.join(_T, _T.c.id == _S.c.thread_id))
        .where(_owned(user_id), _S.c.status == "active")
    )


async def admit_stream(conn: AsyncConnection, user_id: str, stream: NewStream) -> None:
    """Refuse (:class:`TooManyStreams`) to register ``stream`` when the user already has ``stream.max_active``
    active streams; a no-op without ``max_active``. Run it first in the transaction that inserts the stream: the
    count and the insert are then one atomic step for every process sharing the database, since the admissions of
    one user take turns until their transactions end. On PostgreSQL they queue on a transaction-scoped advisory
    lock on the user (the count runs after it is granted, so under READ COMMITTED it sees every stream committed
    before); on SQLite the write transaction (``BEGIN IMMEDIATE``) is exclusive already."""
    if not stream.max_active:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(_ADMISSION_LOCKS, func.hashtext(user_id))))
    if (await conn.execute(_active_streams(user_id))).scalar_one() >= stream.max_active:
        raise TooManyStreams(stream.max_active)


async def insert_stream(conn: AsyncConnection, thread_id: str, stream: NewStream) -> None:
    """Insert ``stream``'s row in the thread (which must exist), with no chunks yet."""
    now = _now()
    await conn.execute(
        insert(_S).values(
            id=stream.id,
            thread_id=thread_id,
            message_id=stream.message_id,
            parent_id=stream.parent_id,
            status="active",
            owner=stream.owner,
            stop_requested=False,
            chunk_count=0,
            created_at=now,
            updated_at=now,
        )
    )


async def _move_stream_parents(conn: AsyncConnection, thread_id: str, old: str, new: str | None) -> None:
    """Make the streams whose reply goes under ``old`` put it under ``new``: a stream's ``parent_id`` is where its
    reply goes once generated, a child to come, so it follows the message as the message's children do (a
    deletion moves them up, an edit keeps them under the old version). The caller holds the thread's lock, taken
    before any stream row, in the order :meth:`chatkeep.store.streams.StreamLog.interrupt_orphans` takes them."""
    await conn.execute(update(_S).where(_S.c.thread_id == thread_id, _S.c.parent_id == old).values(parent_id=new))


@dataclass(frozen=True, slots=True)
class _UpsertTarget:
    message_seq: int
    message: Any  # the row (seq, created_at, parent_id, status) of the message, None when it is new
    parent_seq: int | None


#: up to this many messages, their parts are asked for by id; beyond, all the thread's parts are read
_FEW = 16


def _owned(user_id: str) -> ColumnElement[bool]:
    """The one place a query says "threads of this user": every thread lookup goes through it (on PostgreSQL,
    row-level security enforces the same rule again, and the tests check that it does with this filter
    removed)."""
    return _T.c.user_id == user_id


def _now() -> datetime:
    return datetime.now(UTC)


def _thread(row: Any) -> Thread:
    return Thread(
        id=row.id,
        user_id=row.user_id,
        title=row.title,
        status=cast(ThreadStatus, row.status),
        custom=row.custom,
        head_id=row.head_id,
        local_id=row.local_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    try:
        values: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(shape):
            raise ValueError(cursor)
        for value, kind in zip(values, shape, strict=True):
            if type(value) is not kind:  # exact: bool is an int in Python
                raise ValueError(cursor)
            if isinstance(value, int) and not -(2**63) <= value < 2**63:  # order keys are signed 64-bit
                raise ValueError(cursor)
        return values
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput([ValidationIssue(("after",), "not a cursor this listing handed out")]) from exc


def _check_limit(limit: int | None) -> None:
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise InvalidInput([ValidationIssue(("limit",), f"must be between 1 and {MAX_PAGE}")])


def _check_text(value: Any, loc: tuple[str | int, ...]) -> None:
    issues = find_forbidden_characters(value, loc)
    if issues:
        raise InvalidInput(issues)


class ChatStore(Database):
    """Threads and messages of many users in one database. Safe to share across tasks."""

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 20) -> ChatStore:
        """A store on its own engine (``postgres://…``, ``postgresql://…``, ``sqlite:///path``)."""
        return cls(make_engine(url, pool_size=pool_size))

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the database answers."""
        async with self._read(SYSTEM) as conn:
            await conn.execute(select(1))

    async def bypasses_row_security(self) -> bool:
        """Whether this PostgreSQL connection's role is exempt from row-level security (a superuser, or a role
        with ``BYPASSRLS``); always ``False`` on SQLite, which has none."""
        if self.dialect != "postgresql":
            return False
        query = text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        async with self._read(SYSTEM) as conn:
            return bool((await conn.execute(query)).scalar())

    # -- threads ------------------------------------------------------------------------------------------

    @uncancellable
    async def create_thread(
        self,
        user_id: str,
        *,
        thread_id: str | None = None,
        local_id: str | None = None,
        title: str | None = None,
        custom: Any = None,
        status: ThreadStatus = "regular",
    ) -> tuple[Thread, bool]:
        """Create a thread and return ``(thread, True)``, or ``(existing, False)``.

        Idempotent on ``local_id`` (the client's own id for the thread) and on ``thread_id``: asking again gives
        back the thread made the first time. A ``thread_id`` taken by another user raises
        :class:`ThreadNotFound`, as if the caller had asked for that user's thread.
        """
        _check_text([user_id, thread_id, local_id, title, custom], ("body",))
        async with self._write(user_id) as conn:
            return await self._create_thread(
                conn, user_id, thread_id=thread_id, local_id=local_id, title=title, custom=custom, status=status
            )

    async def _create_thread(
        self,
        conn: AsyncConnection,
        user_id: str,
        *,
        thread_id: str | None,
        local_id: str | None = None,
        title: str | None = None,
        custom: Any = None,
        status: ThreadStatus = "regular",
    ) -> tuple[Thread, bool]:
        if local_id is not None:
            existing = await conn.execute(select(*_THREAD_COLUMNS).where(_owned(user_id), _T.c.local_id == local_id))
            if (row := existing.first()) is not None:
                return _thread(row), False
        new_id = thread_id if thread_id is not None else generate_id()
        now = _now()
        values = {
            "id": new_id, "user_id": user_id, "local_id": local_id, "title": title, "status": status,
            "custom": custom, "head_id": None, "message_seq": 0, "created_at": now, "updated_at": now,
        }  # fmt: skip
        # No conflict target: a concurrent creation may clash on the id or on (user_id, local_id), and either
        # means "it exists already". On PostgreSQL the insert waits for the other transaction, so the lookups
        # below see its row.
        inserted = await conn.execute(self._insert_ignoring_conflicts(_T).values(values))
        if inserted.rowcount == 1:
            return _thread_from_values(values), True
        lookups = [and_(_T.c.id == new_id, _owned(user_id))]
        if local_id is not None:
            lookups.insert(0, and_(_owned(user_id), _T.c.local_id == local_id))
        for condition in lookups:
            if (row := (await conn.execute(select(*_THREAD_COLUMNS).where(condition))).first()) is not None:
                return _thread(row), False
        raise ThreadNotFound(new_id)

    async def get_thread(self, user_id: str, thread_id: str) -> Thread:
        async with self._read(user_id) as conn:
            return await self._get_thread(conn, user_id, thread_id)

    async def _get_thread(self, conn: AsyncConnection, user_id: str, thread_id: str) -> Thread:
        result = await conn.execute(select(*_THREAD_COLUMNS).where(_T.c.id == thread_id, _owned(user_id)))
        row = result.first()
        if row is None:
            raise ThreadNotFound(thread_id)
        return _thread(row)

    async def list_threads(
        self,
        user_id: str,
        *,
        limit: int = 100,
        after: str | None = None,
        status: ThreadStatus | None = None,
    ) -> Page[Thread]:
        """The user's threads, most recently updated first (both statuses unless ``status`` is given).

        Keyset-paged on ``(updated_at, id)``: a page costs the same however deep it is, and a thread updated while
        someone pages moves to the front instead of shifting the pages after it.
        """
        _check_limit(limit)
        query = select(*_THREAD_COLUMNS).where(_owned(user_id))
        if status is not None:
            query = query.where(_T.c.status == status)
        if after is not None:
            stamp, last_id = _decode_cursor(after, (str, str))
            try:
                when = datetime.fromisoformat(stamp)
            except ValueError as exc:
                raise InvalidInput([ValidationIssue(("after",), "not a cursor this listing handed out")]) from exc
            query = query.where(tuple_(_T.c.updated_at, _T.c.id) < tuple_(when, last_id))
        query = query.order_by(_T.c.updated_at.desc(), _T.c.id.desc()).limit(limit + 1)
        async with self._read(user_id) as conn:
            rows = (await conn.execute(query)).all()
        threads = [_thread(row) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            last = threads[-1]
            cursor = _encode_cursor(last.updated_at.isoformat(), last.id)
        return Page(threads, cursor)

    @uncancellable
    async def update_thread(
        self,
        user_id: str,
        thread_id: str,
        *,
        title: str | None | _Unset = UNSET,
        status: ThreadStatus | _Unset = UNSET,
        custom: Any = UNSET,
        head_id: str | _Unset = UNSET,
    ) -> Thread:
        """Change what is given (``title=None`` clears the title) and bump ``updated_at``.

        ``head_id`` moves the active branch to end at that message, which must be in the thread.
        """
        changes: dict[str, Any] = {}
        if not isinstance(title, _Unset):
            changes["title"] = title
        if not isinstance(status, _Unset):
            changes["status"] = status
        if not isinstance(custom, _Unset):
            changes["custom"] = custom
        _check_text([changes.get("title"), changes.get("custom")], ("body",))
        async with self._write(user_id) as conn:
            if not isinstance(head_id, _Unset):
                await self._lock_thread(conn, user_id, thread_id)
                found = await conn.execute(select(_M.c.id).where(_M.c.thread_id == thread_id, _M.c.id == head_id))
                if found.first() is None:
                    raise MessageNotFound(thread_id, head_id)
                changes["head_id"] = head_id
            changes["updated_at"] = _now()
            result = await conn.execute(
                update(_T).where(_T.c.id == thread_id, _owned(user_id)).values(changes).returning(*_THREAD_COLUMNS)
            )
            row = result.first()
            if row is None:
                raise ThreadNotFound(thread_id)
            return _thread(row)

    @uncancellable
    async def title_untitled(self, user_id: str, thread_id: str, title: str) -> bool:
        """Give the user's thread ``title`` if it has none (no title, or an empty one), in one statement, and say
        whether it did: a title set meanwhile by anyone else is kept. ``updated_at`` does not move (naming a
        thread is not activity in it, and must not reorder the thread list)."""
        _check_text([title], ("title",))
        untitled = or_(_T.c.title.is_(None), _T.c.title == "")
        async with self._write(user_id) as conn:
            result = await conn.execute(
                update(_T).where(_T.c.id == thread_id, _owned(user_id), untitled).values(title=title)
            )
            return bool(result.rowcount)

    async def rename_thread(self, user_id: str, thread_id: str, title: str | None) -> Thread:
        return await self.update_thread(user_id, thread_id, title=title)

    async def archive_thread(self, user_id: str, thread_id: str) -> Thread:
        return await self.update_thread(user_id, thread_id, status="archived")

    async def unarchive_thread(self, user_id: str, thread_id: str) -> Thread:
        return await self.update_thread(user_id, thread_id, status="regular")

    @uncancellable
    async def delete_thread(self, user_id: str, thread_id: str) -> None:
        """Delete the thread with all its messages and parts."""
        async with self._write(user_id) as conn:
            result = await conn.execute(delete(_T).where(_T.c.id == thread_id, _owned(user_id)))
            if result.rowcount == 0:
                raise ThreadNotFound(thread_id)

    # -- messages: writes ---------------------------------------------------------------------------------

    @uncancellable
    async def upsert_message(
        self,
        user_id: str,
        thread_id: str,
        *,
        message_id: str,
        parent_id: str | None | _Unset,
        content: Mapping[str, Any] | BaseModel,
        format: str = DEFAULT_FORMAT,
        create_thread: bool = False,
        status: str | None | _Unset = UNSET,
    ) -> StoredMessage:
        """Insert the message, or replace the one with that id, with all its parts, in one transaction.

        ``content`` is the UIMessage without ``id`` for the AI SDK formats (validated; raises
        :class:`InvalidMessage`), any JSON object otherwise (kept verbatim). A new message becomes the thread's
        active leaf. ``parent_id`` must name an earlier message of the thread (:class:`ParentNotFound`);
        ``UNSET`` keeps the parent of a stored message (and makes a new one a root). With
        ``create_thread``, a thread id the user does not have yet is created for them (the assistant-ui
        first-message race), unless another user has it.

        ``status`` says how a reply the server generated ended (``None``: complete; see
        :attr:`StoredMessage.status`), and only the chat service sets it. ``UNSET``, what every other writer passes,
        keeps the stored message's status (a new message is complete): a client writing back its copy of a reply
        (assistant-ui appends every reply it was streamed, failed or stopped ones too) does not erase how it ended.

        On PostgreSQL a new message with a given parent (an append, the common case) is first tried in one
        round trip (see :meth:`_insert_new_pg`); anything else (an update, a missing thread or parent) goes
        through :meth:`_upsert`. ``UNSET`` means "update the stored one", so it goes there directly.
        """
        columns, part_rows, data = _prepare_content(content, format)
        _check_text([message_id, None if isinstance(parent_id, _Unset) else parent_id, format], ())
        if self.dialect == "postgresql" and not isinstance(parent_id, _Unset):
            stored = await self._insert_new_pg(
                user_id,
                thread_id,
                message_id,
                parent_id,
                format,
                data,
                columns,
                part_rows,
                None if isinstance(status, _Unset) else status,
                create_thread=create_thread,
            )
            if stored is not None:
                return stored
        async with self._write(user_id) as conn:
            return await self._upsert(
                conn, user_id, thread_id, message_id, parent_id, format, data, columns, part_rows, create_thread, status
            )

    @uncancellable
    async def edit_message(
        self,
        user_id: str,
        thread_id: str,
        *,
        message_id: str,
        content: Mapping[str, Any] | BaseModel,
        format: str = DEFAULT_FORMAT,
    ) -> tuple[StoredMessage, str]:
        """Store a new version of a message as a sibling of the old one, keeping the id for the new version.

        The old version and the whole branch below it stay, renamed to a fresh id (returned); the new version
        has the same parent, no children, and becomes the active leaf. This is how an edit that keeps the
        message id (useChat's ``sendMessage({text, messageId})``) stays non-destructive.
        """
        columns, part_rows, data = _prepare_content(content, format)
        async with self._write(user_id) as conn:
            return await self._edit(conn, user_id, thread_id, message_id, format, data, columns, part_rows)

    async def _store_reply(
        self,
        conn: AsyncConnection,
        user_id: str,
        thread_id: str,
        message_id: str,
        parent_id: str | None | _Unset,
        content: Mapping[str, Any],
        status: str | None,
    ) -> None:
        """Store a reply the server generated (an AI SDK message), in the caller's transaction ``conn``: as
        :meth:`upsert_message` does, for :class:`chatkeep.store.streams.StreamLog`, which decides where it goes."""
        columns, part_rows, data = _prepare_content(content, DEFAULT_FORMAT)
        await self._upsert(
            conn, user_id, thread_id, message_id, parent_id, DEFAULT_FORMAT, data, columns, part_rows, False, status
        )

    async def _edit(
        self,
        conn: AsyncConnection,
        user_id: str,
        thread_id: str,
        message_id: str,
        format: str,
        data: Any,
        columns: dict[str, Any],
        part_rows: list[dict[str, Any]],
    ) -> tuple[StoredMessage, str]:
        parent_id = await self._lock_and_find_parent(conn, user_id, thread_id, message_id)
        old_id = f"{message_id[:200]}~{generate_id(size=10)}"
        # ON UPDATE CASCADE carries the children's parent_id and the parts along; a reply being generated to the
        # old version goes with it too (see _move_stream_parents).
        await conn.execute(update(_M).where(_M.c.thread_id == thread_id, _M.c.id == message_id).values(id=old_id))
        await conn.execute(update(_T).where(_T.c.id == thread_id, _T.c.head_id == message_id).values(head_id=old_id))
        await _move_stream_parents(conn, thread_id, message_id, old_id)
        stored = await self._upsert(
            conn, user_id, thread_id, message_id, parent_id, format, data, columns, part_rows, False, None
        )
        return stored, old_id

    @uncancellable
    async def write_messages(
        self, user_id: str, thread_id: str, writes: Sequence[MessageWrite], *, stream: NewStream | None = None
    ) -> None:
        """Apply ``writes`` in order, in one transaction, creating the thread for the user if they have none
        with this id (:class:`ThreadNotFound` if another user has it): what a chat turn stores before its model
        runs, all of it or, on any error, nothing. Each write is :meth:`upsert_message`, or with ``edit``
        :meth:`edit_message`, of an AI SDK message. ``stream``, the turn's reply stream, is registered in the same
        transaction (one commit before the first byte instead of two), if admitted (:func:`admit_stream`: else
        :class:`TooManyStreams`, and nothing is written)."""
        # a new prompt, the common turn (in a new thread too): one round trip where the store can
        if len(writes) == 1 and await self.insert_new_message(user_id, thread_id, writes[0], stream=stream):
            return
        prepared = [(write, *_prepare_content(write.content, DEFAULT_FORMAT)) for write in writes]
        _check_text([w.message_id for w in writes] + [w.parent_id for w in writes], ())
        async with self._write(user_id) as conn:
            if stream is not None:
                await admit_stream(conn, user_id, stream)
            if not prepared:
                await self._create_thread(conn, user_id, thread_id=thread_id)
            for index, (write, columns, part_rows, data) in enumerate(prepared):
                if write.edit:
                    await self._edit(
                        conn, user_id, thread_id, write.message_id, DEFAULT_FORMAT, data, columns, part_rows
                    )
                else:
                    await self._upsert(
                        conn, user_id, thread_id, write.message_id, write.parent_id, DEFAULT_FORMAT, data, columns,
                        part_rows, index == 0, None,
                    )  # fmt: skip
            if stream is not None:
                await insert_stream(conn, thread_id, stream)

    @property
    def inserts_in_one_round_trip(self) -> bool:
        """Whether :meth:`insert_new_message` can store anything (PostgreSQL only)."""
        return self.dialect == "postgresql"

    @uncancellable
    async def insert_new_message(
        self, user_id: str, thread_id: str, write: MessageWrite, *, stream: NewStream | None = None
    ) -> bool:
        """Store ``write``, an AI SDK message new to the thread, as :meth:`write_messages` would (the user's thread
        is created for a root message if they have none with this id), with ``stream``'s row; or return False,
        having written nothing, when it is not that case: the message is in the thread already, the thread is
        another user's, the parent is not in the thread. One round trip on PostgreSQL; elsewhere always False (the
        caller then takes its general path). Refuses invalid content as :meth:`write_messages` does, and a stream
        it does not admit (:class:`TooManyStreams`, as :func:`admit_stream` decides)."""
        if not self.inserts_in_one_round_trip or write.edit:
            return False
        columns, part_rows, data = _prepare_content(write.content, DEFAULT_FORMAT)
        _check_text([write.message_id, write.parent_id], ())
        stored = await self._insert_new_pg(
            user_id, thread_id, write.message_id, write.parent_id, DEFAULT_FORMAT, data, columns, part_rows, None,
            stream, create_thread=True,
        )  # fmt: skip
        return stored is not None

    async def _upsert(
        self,
        conn: AsyncConnection,
        user_id: str,
        thread_id: str,
        message_id: str,
        parent_id: str | None | _Unset,
        format: str,
        data: Any,
        columns: dict[str, Any],
        part_rows: list[dict[str, Any]],
        create_thread: bool,
        status: str | None | _Unset,
    ) -> StoredMessage:
        now = _now()
        asked_parent = None if isinstance(parent_id, _Unset) else parent_id
        found = await self._lock_for_upsert(conn, user_id, thread_id, message_id, asked_parent, create=create_thread)
        existing = found.message
        seq = existing.seq if existing is not None else found.message_seq + 1
        if isinstance(status, _Unset):
            status = existing.status if existing is not None else None
        if isinstance(parent_id, _Unset):
            parent_id = existing.parent_id if existing is not None else None
        elif parent_id is not None and (found.parent_seq is None or found.parent_seq >= seq):
            raise ParentNotFound(thread_id, message_id, parent_id)
        values = {
            "parent_id": parent_id,
            "format": format,
            "role": columns["role"],
            "metadata": columns["metadata_"],
            "content": columns["content"],
            "extra": columns["extra"],
            "status": status,
            "updated_at": now,
        }
        if existing is None:
            created_at = now
            await conn.execute(insert(_M).values(thread_id=thread_id, id=message_id, seq=seq, created_at=now, **values))
            await conn.execute(
                update(_T).where(_T.c.id == thread_id).values(message_seq=seq, head_id=message_id, updated_at=now)
            )
        else:
            created_at = existing.created_at
            await conn.execute(update(_M).where(_M.c.thread_id == thread_id, _M.c.id == message_id).values(values))
            await conn.execute(delete(_P).where(_P.c.thread_id == thread_id, _P.c.message_id == message_id))
            await conn.execute(update(_T).where(_T.c.id == thread_id).values(updated_at=now))
        if part_rows:
            for row in part_rows:
                row["thread_id"] = thread_id
                row["message_id"] = message_id
            await conn.execute(insert(_P), part_rows)
        return StoredMessage(
            id=message_id, thread_id=thread_id, parent_id=parent_id, format=format, content=data, seq=seq,
            created_at=created_at, updated_at=now, status=status,
        )  # fmt: skip

    async def _insert_new_pg(
        self,
        user_id: str,
        thread_id: str,
        message_id: str,
        parent_id: str | None,
        format: str,
        data: Any,
        columns: dict[str, Any],
        part_rows: list[dict[str, Any]],
        status: str | None,
        stream: NewStream | None = None,
        *,
        create_thread: bool = False,
    ) -> StoredMessage | None:
        """Store a message that is new to the thread, with its parts (and ``stream``'s row, if given), in one round
        trip on PostgreSQL (eight on the general path); or return ``None``, having written nothing, when it is not
        that case: the thread is missing (or another user's), the message exists, the parent is not in the thread,
        or a constraint refused a row. The caller then runs :meth:`_upsert`, which handles every case and raises
        the right error. With ``create_thread``, a root message (no parent) creates the user's thread when it is
        missing, in the same round trip (a third execution, between the two described below).

        One statement (:func:`_pg_insert_new_sql`), executed twice in one pipeline (asyncpg's ``fetchmany``:
        Bind/Execute twice, then one Sync, so both executions are one implicit transaction, all or nothing). The
        first execution only sets the caller for row-level security (its writes are switched off by ``$12``); the
        server runs the second after the first has finished, so every row-level-security check of the second
        sees the caller (it sets the same value again, which changes nothing). Within the second, the thread is
        locked (``FOR UPDATE``: writes to a thread stay serialized) and the message gets ``message_seq + 1``
        (greater than every ``seq`` in the thread, so ``seq`` only grows); it is inserted with its parts only if
        its parent is in the thread (parents before children) and its id is new (``ON CONFLICT DO NOTHING``: an
        existing message keeps its ``seq``, via :meth:`_upsert`), and only then do the thread's ``message_seq``,
        head and ``updated_at`` move. A statement that waited for the thread lock still reads with its earlier
        snapshot (see :meth:`_lock_for_upsert`): a parent written meanwhile may look missing, and one deleted
        meanwhile fails the foreign key; both only send the write to :meth:`_upsert`.
        """
        now = _now()
        write = _pg_insert_args(
            user_id, now, write=True, thread_id=thread_id, message_id=message_id, parent_id=parent_id, format=format,
            role=columns["role"], metadata=_json_arg(columns["metadata_"]), content=_json_arg(columns["content"]),
            extra=_json_arg(columns["extra"]), status=status, parts=_pg_parts_document(part_rows), stream=stream,
        )  # fmt: skip
        # the first execution writes nothing: it only sets the caller (and takes the stream admission's lock)
        pipeline = [_pg_insert_args(user_id, now, stream=stream), write]
        if create_thread and parent_id is None:
            # A new thread's first message: one more execution, between the two, creates the thread (under the
            # caller the first one set; the last one then finds it). Only for a root message: with the thread
            # created, the write can then only fail with an error, which undoes the whole pipeline, so a thread
            # is never left behind without the message that made it.
            pipeline.insert(1, _pg_insert_args(user_id, now, thread_id=thread_id, create=True, stream=stream))
        async with self._pg_driver() as driver:
            try:
                rows = await driver.fetchmany(_pg_insert_new_sql(), pipeline)
            except asyncpg.IntegrityConstraintViolationError:
                return None  # rolled back with its implicit transaction: let _upsert say what is wrong
        seq, admitted = rows[-1][0], rows[-1][3]
        if not admitted:
            assert stream is not None
            raise TooManyStreams(stream.max_active)
        if seq is None:
            return None
        return StoredMessage(
            id=message_id, thread_id=thread_id, parent_id=parent_id, format=format, content=data, seq=int(seq),
            created_at=now, updated_at=now, status=status,
        )  # fmt: skip

    async def append_message(
        self,
        user_id: str,
        thread_id: str,
        message: Mapping[str, Any] | BaseModel,
        *,
        parent_id: str | None | _Unset = UNSET,
        format: str = DEFAULT_FORMAT,
        create_thread: bool = False,
    ) -> StoredMessage:
        """Add a UIMessage (``{id, role, parts, …}``) under ``parent_id``, by default under the active leaf.

        Like :meth:`upsert_message` otherwise; the message's ``id`` is taken from the message.
        """
        data = dict(_content_dict(message))
        message_id = data.pop("id", None)
        if not isinstance(message_id, str) or not message_id:
            raise InvalidMessage([ValidationIssue(("id",), "a message needs a non-empty string id", "missing")])
        if isinstance(parent_id, _Unset):
            try:
                parent_id = (await self.get_thread(user_id, thread_id)).head_id
            except ThreadNotFound:
                if not create_thread:
                    raise
                parent_id = None
        return await self.upsert_message(
            user_id, thread_id, message_id=message_id, parent_id=parent_id, content=data, format=format,
            create_thread=create_thread,
        )  # fmt: skip

    @uncancellable
    async def delete_message(self, user_id: str, thread_id: str, message_id: str) -> None:
        """Delete one message and its parts; its children move up to its parent, so no branch is lost. So do the
        replies being generated under it: each is stored there when it ends (or is rebuilt after a crash).

        If it was the active leaf, its parent becomes the active leaf.
        """
        async with self._write(user_id) as conn:
            parent_id = await self._lock_and_find_parent(conn, user_id, thread_id, message_id)
            await conn.execute(
                update(_M).where(_M.c.thread_id == thread_id, _M.c.parent_id == message_id).values(parent_id=parent_id)
            )
            await _move_stream_parents(conn, thread_id, message_id, parent_id)
            await conn.execute(delete(_M).where(_M.c.thread_id == thread_id, _M.c.id == message_id))
            await conn.execute(
                update(_T).where(_T.c.id == thread_id, _T.c.head_id == message_id).values(head_id=parent_id)
            )
            await conn.execute(update(_T).where(_T.c.id == thread_id).values(updated_at=_now()))

    async def _lock_for_upsert(
        self,
        conn: AsyncConnection,
        user_id: str,
        thread_id: str,
        message_id: str,
        parent_id: str | None,
        *,
        create: bool,
    ) -> _UpsertTarget:
        """Lock the user's thread (see :meth:`_lock_thread`), then read in one round trip the message (when it
        exists) and ``parent_id``'s ``seq``.

        Two statements, not one join: on PostgreSQL a statement that waited for the lock still reads with the
        snapshot it started with, so a message a concurrent writer added meanwhile would look missing.
        """
        message_seq = await self._lock_thread(conn, user_id, thread_id, create=create)
        wanted = [message_id] if parent_id is None or parent_id == message_id else [message_id, parent_id]
        rows = (
            await conn.execute(
                select(_M.c.id, _M.c.seq, _M.c.created_at, _M.c.parent_id, _M.c.status).where(
                    _M.c.thread_id == thread_id, _M.c.id.in_(wanted)
                )
            )
        ).all()
        by_id = {row.id: row for row in rows}
        parent = by_id.get(parent_id) if parent_id is not None else None
        return _UpsertTarget(message_seq, by_id.get(message_id), None if parent is None else parent.seq)

    async def _lock_and_find_parent(
        self, conn: AsyncConnection, user_id: str, thread_id: str, message_id: str
    ) -> str | None:
        """Lock the user's thread and return the parent of one of its messages (:class:`MessageNotFound` if none)."""
        await self._lock_thread(conn, user_id, thread_id)
        query = select(_M.c.parent_id).where(_M.c.thread_id == thread_id, _M.c.id == message_id)
        found = (await conn.execute(query)).first()
        if found is None:
            raise MessageNotFound(thread_id, message_id)
        return cast("str | None", found.parent_id)

    async def _lock_thread(self, conn: AsyncConnection, user_id: str, thread_id: str, *, create: bool = False) -> int:
        """Check the thread is the user's, lock it against concurrent writers, and return its ``message_seq``."""
        query = select(_T.c.message_seq).where(_T.c.id == thread_id, _owned(user_id))
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is not None:
            return int(row.message_seq)
        if create:
            await self._create_thread(conn, user_id, thread_id=thread_id)
            return await self._lock_thread(conn, user_id, thread_id)
        raise ThreadNotFound(thread_id)

    # -- messages: reads ----------------------------------------------------------------------------------

    async def get_message(self, user_id: str, thread_id: str, message_id: str) -> StoredMessage:
        messages, _ = await self._read_owned(user_id, thread_id, _Filter(message_id=message_id))
        if not messages:
            raise MessageNotFound(thread_id, message_id)
        return messages[0]

    async def list_messages(
        self,
        user_id: str,
        thread_id: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        format: str | None = None,
        include_streaming: bool = False,
    ) -> Page[StoredMessage]:
        """The thread's messages, parents before children (in the order they were first written).

        Without ``limit`` the whole thread comes in one page; with it, pages continue from ``after``. A reply
        that is still being generated is left out unless ``include_streaming``: a client that loads the history
        while it streams gets it by resuming the stream, and must not get it twice.
        """
        _check_limit(limit)
        after_seq = None if after is None else _decode_cursor(after, (int,))[0]
        wanted = _Filter(after_seq=after_seq, format=format, exclude_streaming=not include_streaming)
        messages, _ = await self._read_owned(user_id, thread_id, wanted, limit=None if limit is None else limit + 1)
        cursor = None
        if limit is not None and len(messages) > limit:
            messages = messages[:limit]
            cursor = _encode_cursor(messages[-1].seq)
        return Page(messages, cursor)

    async def load_tree(self, user_id: str, thread_id: str) -> MessageTree:
        """Every message of the thread with the active leaf: enough to draw every branch."""
        messages, head_id = await self._read_owned(user_id, thread_id, _Filter())
        return MessageTree(messages, head_id)

    async def active_branch(self, user_id: str, thread_id: str) -> list[dict[str, Any]]:
        """The UIMessages from the root to the active leaf, ready for ``useChat({messages})``.

        Messages in formats other than the AI SDK's are left out (they are not UIMessages), and so is a reply that
        is still being generated (resume its stream instead; see :meth:`list_messages`).
        """
        tree = await self.load_tree(user_id, thread_id)
        return [m.ui_message() for m in tree.branch() if is_ai_sdk_format(m.format) and m.status != "streaming"]

    async def _read_owned(
        self, user_id: str, thread_id: str, wanted: _Filter, *, limit: int | None = None
    ) -> tuple[list[StoredMessage], str | None]:
        """:meth:`_load_owned` of the ``wanted`` messages in a read transaction of its own: one round trip on
        PostgreSQL (:meth:`_load_owned_pg`)."""
        if self.dialect == "postgresql":
            return await self._load_owned_pg(user_id, thread_id, wanted, limit=limit)
        async with self._read(user_id) as conn:
            return await self._load_owned(conn, user_id, thread_id, wanted.condition(), limit=limit)

    async def _load_owned_pg(
        self, user_id: str, thread_id: str, wanted: _Filter, *, limit: int | None = None
    ) -> tuple[list[StoredMessage], str | None]:
        """:meth:`_load_owned` on PostgreSQL in one round trip, where a read transaction took five (``BEGIN``, the
        caller, the messages, their parts, ``COMMIT``): one statement (:func:`_pg_load_statement`) executed twice
        in one pipeline (asyncpg's ``fetchmany``, one implicit transaction), as the one-round-trip writes are. The
        first execution only sets the caller for row-level security; the second returns the thread's row (none:
        not the user's thread), the messages and their parts, all from one snapshot."""
        template = _pg_load_template(self.engine.dialect, wanted.shape, limit is not None)
        values = {_LOAD_THREAD_ID: thread_id, _LOAD_USER_ID: user_id, _LOAD_LIMIT: limit, **wanted.values()}
        reading = template.arguments(values, read=True)
        calling = template.arguments(values, read=False)
        sql = template.sql
        async with self._pg_driver() as driver:
            rows = await driver.fetchmany(sql, [calling, reading])
        with gc_paused():
            return _assemble_pg_load(thread_id, rows)

    async def _load_owned(
        self, conn: AsyncConnection, user_id: str, thread_id: str, condition: Any, *, limit: int | None = None
    ) -> tuple[list[StoredMessage], str | None]:
        """:meth:`_load_messages` of the user's thread, and the thread's active leaf; :class:`ThreadNotFound` when
        it is not the user's. The messages query checks the owner itself (joined to the thread), so a thread with
        messages costs no query of its own; only when no message matches is the thread looked up."""
        messages, head_id = await self._load_messages(conn, thread_id, condition, limit=limit, owner=user_id)
        if not messages:
            head_id = (await self._get_thread(conn, user_id, thread_id)).head_id
        return messages, head_id

    async def _load_messages(
        self,
        conn: AsyncConnection,
        thread_id: str,
        condition: Any,
        *,
        limit: int | None = None,
        owner: str | None = None,
    ) -> tuple[list[StoredMessage], str | None]:
        """The thread's messages that meet ``condition`` (all for ``None``), in ``seq`` order, at most ``limit``;
        with ``owner``, only if the thread is that user's, and then also the thread's active leaf (else ``None``).

        Two queries whatever the count: the messages, then the parts of those stored as part rows. Rows are read
        by position (with :data:`_read_part` for parts): this is the hot path of loading a thread.
        """
        query = select(*_LOAD_COLUMNS).where(_M.c.thread_id == thread_id).order_by(_M.c.seq)
        if owner is not None:
            query = query.add_columns(_T.c.head_id).join(_T, _T.c.id == _M.c.thread_id).where(_owned(owner))
        if condition is not None:
            query = query.where(condition)
        if limit is not None:
            query = query.limit(limit)
        rows = await self._fetch_rows(conn, query)
        typed_ids = [row[_AT_ID] for row in rows if row[_AT_CONTENT] is None]
        parts: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        if typed_ids:
            part_query = select(*_PART_READ).where(_P.c.thread_id == thread_id)
            if limit is not None:
                # the parts of this page only, chosen by the database (no id list sent back and forth)
                page = select(_M.c.id).where(_M.c.thread_id == thread_id, _M.c.content.is_(None))
                if condition is not None:
                    page = page.where(condition)
                part_query = part_query.where(_P.c.message_id.in_(page.order_by(_M.c.seq).limit(limit)))
            elif condition is not None and len(typed_ids) <= _FEW:
                part_query = part_query.where(_P.c.message_id.in_(typed_ids))
            # else: every part of the thread (those of the few messages the condition left out go unused)
            # Parts are grouped by message below, so only their order within a message matters: sorting by
            # part_order alone spares PostgreSQL comparing message ids (about 1 ms of a 1,000-message thread).
            part_query = part_query.order_by(_P.c.part_order)
            part_rows = await self._fetch_rows(conn, part_query)
            read = _read_part
            with gc_paused():
                for part in part_rows:
                    parts[part[0]].append(read(part))  # _PART_READ starts with message_id
        head_id = rows[0][len(_LOAD_COLUMNS)] if owner is not None and rows else None
        with gc_paused():
            return _stored_messages(thread_id, rows, parts), head_id

    async def _fetch_rows(self, conn: AsyncConnection, query: Any) -> Sequence[Sequence[Any]]:
        """The rows of ``query``, read by position (in the order of its columns). On PostgreSQL these are asyncpg's
        records from :meth:`_fetch_mappings` (sequences as well as mappings); elsewhere SQLAlchemy's rows."""
        if self.dialect != "postgresql":
            return (await conn.execute(query)).all()
        return cast("Sequence[Sequence[Any]]", await self._fetch_mappings(conn, query))


#: What _load_messages reads of a message (``thread_id`` is the one asked for), and the position of each column.
_LOAD_COLUMNS = tuple(column for column in _MESSAGE_COLUMNS if column.name != "thread_id")
_AT = {column.name: index for index, column in enumerate(_LOAD_COLUMNS)}
_AT_ID, _AT_PARENT_ID, _AT_FORMAT, _AT_ROLE = _AT["id"], _AT["parent_id"], _AT["format"], _AT["role"]
_AT_METADATA, _AT_CONTENT, _AT_EXTRA, _AT_SEQ = _AT["metadata"], _AT["content"], _AT["extra"], _AT["seq"]
_AT_STATUS, _AT_CREATED_AT, _AT_UPDATED_AT = _AT["status"], _AT["created_at"], _AT["updated_at"]
#: What _load_messages reads of a part: its message, then what the part is read from (no ``part_order``: the query
#: orders by it), and the function that reads it.
_PART_READ = tuple(_P.c[name] for name in ("message_id", *PART_READ_COLUMNS))
_read_part = part_reader([column.name for column in _PART_READ])


def _assemble_pg_load(thread_id: str, rows: Sequence[Sequence[Any]]) -> tuple[list[StoredMessage], str | None]:
    """The messages and the active leaf of the rows of :func:`_pg_load_statement`; :class:`ThreadNotFound` when
    they hold no thread row."""
    head_id: str | None = None
    found = False
    message_rows: list[Sequence[Any]] = []
    part_rows: defaultdict[str, list[Sequence[Any]]] = defaultdict(list)
    for row in rows:
        kind = row[0]
        if kind == _LOAD_PART:
            part_rows[row[_LOAD_PART_AT]].append(row)
        elif kind == _LOAD_MESSAGE:
            message_rows.append(row)
        elif kind == _LOAD_THREAD:
            found, head_id = True, row[_LOAD_HEAD_AT]
    if not found:
        raise ThreadNotFound(thread_id)
    # Ordered here, not by the statement: PostgreSQL's sort of the whole union cost more than the round trips
    # saved. Rows come in order, or close to it, which Python's sort checks in one pass: the messages by
    # ``seq``, each message's parts by ``part_order``.
    message_rows.sort(key=_by_key)
    read = _read_load_part
    parts: dict[str, list[dict[str, Any]]] = {}
    for message_id, found_rows in part_rows.items():
        found_rows.sort(key=_by_key)
        parts[message_id] = [read(row) for row in found_rows]
    return _stored_messages(thread_id, message_rows, parts, offset=_LOAD_MESSAGE_AT), head_id


def _stored_messages(
    thread_id: str, rows: Sequence[Sequence[Any]], parts: Mapping[str, list[dict[str, Any]]], *, offset: int = 0
) -> list[StoredMessage]:
    """The messages of ``rows`` (the columns of :data:`_LOAD_COLUMNS` from position ``offset``), those stored as
    part rows with their ``parts`` (message id → parts, in order)."""
    at_id, at_parent_id, at_format, at_role = (_AT_ID + offset, _AT_PARENT_ID + offset, _AT_FORMAT + offset,
                                               _AT_ROLE + offset)  # fmt: skip
    at_metadata, at_content, at_extra = _AT_METADATA + offset, _AT_CONTENT + offset, _AT_EXTRA + offset
    at_seq, at_status = _AT_SEQ + offset, _AT_STATUS + offset
    at_created_at, at_updated_at = _AT_CREATED_AT + offset, _AT_UPDATED_AT + offset
    out = []
    for row in rows:
        content = row[at_content]
        if content is None:
            found = parts.get(row[at_id])
            content = message_content(row[at_role], row[at_metadata], row[at_extra], found or [])
        message = StoredMessage(
            row[at_id], thread_id, row[at_parent_id], row[at_format], content, row[at_seq],
            row[at_created_at], row[at_updated_at], row[at_status],
        )  # fmt: skip
        out.append(message)
    return out


#: The row kinds of :func:`_pg_load_statement`.
_LOAD_CALLER, _LOAD_THREAD, _LOAD_MESSAGE, _LOAD_PART = 0, 1, 2, 3
#: Its parameter that says whether the execution reads (else it only sets the caller).
_PG_LOAD_READ = "chatkeep_read"
#: Where its columns are: the kind and the sort key, the message columns, the thread's head, the part columns.
_LOAD_MESSAGE_AT = 2
_LOAD_HEAD_AT = _LOAD_MESSAGE_AT + len(_LOAD_COLUMNS)
_LOAD_PART_AT = _LOAD_HEAD_AT + 1
_by_key = itemgetter(1)
_read_load_part = part_reader(
    ["kind", "key", *(f"m.{column.name}" for column in _LOAD_COLUMNS), "head_id", *(c.name for c in _PART_READ)]
)


@dataclass(frozen=True, slots=True)
class _Filter:
    """Which of a thread's messages a read wants (every one by default): one message, those after a ``seq``, of
    a format, or all but replies still streaming."""

    message_id: str | None = None
    after_seq: int | None = None
    format: str | None = None
    exclude_streaming: bool = False

    @property
    def shape(self) -> tuple[bool, bool, bool, bool]:
        """What the query looks like (its values aside): the key of its template."""
        return (self.message_id is not None, self.after_seq is not None, self.format is not None,
                self.exclude_streaming)  # fmt: skip

    def values(self) -> dict[str, Any]:
        """The values of the parameters of :meth:`condition` with ``bound=False``."""
        return {"filter_message_id": self.message_id, "filter_after_seq": self.after_seq, "filter_format": self.format}

    def condition(self, *, bound: bool = True) -> ColumnElement[bool] | None:
        """The condition (``None``: every message), its parameters carrying their values, or, with ``bound=False``,
        only named (for a template; see :meth:`values`)."""

        def param(name: str, value: Any) -> Any:
            return bindparam(f"filter_{name}", value) if bound else bindparam(f"filter_{name}")

        conditions: list[ColumnElement[bool]] = []
        if self.message_id is not None:
            conditions.append(_M.c.id == param("message_id", self.message_id))
        if self.after_seq is not None:
            conditions.append(_M.c.seq > param("after_seq", self.after_seq))
        if self.format is not None:
            conditions.append(_M.c.format == param("format", self.format))
        if self.exclude_streaming:
            conditions.append(or_(_M.c.status.is_(None), _M.c.status != "streaming"))
        return and_(*conditions) if conditions else None


#: The names of :func:`_pg_load_statement`'s parameters in its templates (the filter's are :meth:`_Filter.values`).
_LOAD_THREAD_ID, _LOAD_USER_ID, _LOAD_LIMIT = "load_thread_id", "load_user_id", "load_limit"


@dataclass(frozen=True, slots=True)
class _PgLoadTemplate:
    """:func:`_pg_load_statement` of one shape, compiled: its SQL, and for each of its positional parameters
    either the name of the value to take or a fixed value (the statement's own constants)."""

    sql: str
    slots: tuple[tuple[str | None, Any], ...]

    def arguments(self, values: Mapping[str, Any], *, read: bool) -> list[Any]:
        out = []
        for name, fixed in self.slots:
            if name == _PG_LOAD_READ:
                out.append(read)
            else:
                out.append(fixed if name is None else values[name])
        return out


_pg_load_templates: dict[tuple[Any, ...], _PgLoadTemplate] = {}


def _pg_load_template(dialect: Any, shape: tuple[bool, ...], limited: bool) -> _PgLoadTemplate:
    """The compiled :func:`_pg_load_statement` for a filter of ``shape``, with a limit or not: built and compiled
    once per process (building and compiling it cost a tenth of a chat turn's CPU), keyed by :func:`_owned` too
    so that a test replacing that filter gets a statement without it."""
    key = (_owned, shape, limited)
    template = _pg_load_templates.get(key)
    if template is not None:
        return template
    wanted = _Filter(
        message_id="" if shape[0] else None, after_seq=0 if shape[1] else None, format="" if shape[2] else None,
        exclude_streaming=shape[3],
    )  # fmt: skip
    statement = _pg_load_statement(
        bindparam(_LOAD_THREAD_ID, type_=String),
        bindparam(_LOAD_USER_ID, type_=String),
        wanted.condition(bound=False),
        bindparam(_LOAD_LIMIT, type_=Integer) if limited else None,
        every_part=not limited and not shape[0],
    )
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    named = {_LOAD_THREAD_ID, _LOAD_USER_ID, _LOAD_LIMIT, _PG_LOAD_READ, *wanted.values()}
    constants = compiled.construct_params({name: None for name in named})
    slots = tuple((name, None) if name in named else (None, constants[name]) for name in compiled.positiontup or ())
    template = _PgLoadTemplate(str(compiled), slots)
    _pg_load_templates[key] = template
    return template


def _pg_load_statement(thread_id: Any, user_id: Any, condition: Any, limit: Any, *, every_part: bool) -> Any:
    """PostgreSQL: the statement of :meth:`ChatStore._load_owned_pg`, one ``UNION ALL`` of rows of four kinds
    (:data:`_LOAD_CALLER` …), each ``(kind, seq or part_order, <the message columns>, head, <the part
    columns>)`` with ``NULL`` where a column is not its own, in no particular order (see :func:`_assemble_pg_load`).

    * The caller row, only when :data:`_PG_LOAD_READ` is false: it sets the caller (``set_caller``'s two
      settings, transaction-local), which the rows of the next execution are filtered by.
    * The thread's row, if it is the user's (:func:`_owned`), with its active leaf.
    * The messages meeting ``condition`` (at most ``limit``: the first by ``seq``), of that thread only.
    * The parts of those messages, or with ``every_part`` of every message of the thread: for a ``condition``
      that leaves out few messages (of another format, still streaming), whose parts are then not used.

    Every branch reads rows in proportion to those it returns whether or not the tables were ever analyzed
    (``tests/test_plans.py`` checks the plans), but one: on small tables never analyzed the planner may find one
    message by the ``(thread_id, seq)`` index rather than the primary key, and read the thread's messages (never
    its parts) to return one.
    """
    read = bindparam(_PG_LOAD_READ, True, type_=Boolean)
    caller = select(
        func.set_config("chatkeep.user_id", user_id, True).label("user_id"),
        func.set_config("chatkeep.system", "off", True).label("system"),
    ).cte("caller")
    thread = select(_T.c.head_id).where(read, _T.c.id == thread_id, _owned(user_id)).cte("thread")
    owned = exists(select(thread.c.head_id))
    messages = select(*_LOAD_COLUMNS).where(_M.c.thread_id == thread_id, owned)
    if condition is not None:
        messages = messages.where(condition)
    if limit is not None:
        messages = messages.order_by(_M.c.seq).limit(limit)
    chosen = messages.cte("chosen")
    # typed NULLs: PostgreSQL resolves a UNION's column types a pair of branches at a time, so two untyped NULLs
    # would become text
    no_message = [cast_(null(), column.type).label(f"m_{column.name}") for column in _LOAD_COLUMNS]
    no_part = [cast_(null(), column.type).label(f"p_{column.name}") for column in _PART_READ]
    no_key, no_head = cast_(null(), _M.c.seq.type), cast_(null(), _T.c.head_id.type)

    def kind(value: int) -> Any:
        return literal_column(str(value))

    # The parts: of the whole thread, one range of the parts' primary key (thread_id, message_id, part_order);
    # else those of each chosen message, found by a probe of that key of its own: a nested loop over the chosen
    # messages, fixed by a lateral subquery the planner may not flatten (``OFFSET 0``), so that the parts cost
    # what they return whatever the planner guesses. ``message_id IN (SELECT … FROM chosen)`` left the join
    # order to the planner, which on tables never analyzed guessed a part or two per thread and scanned the
    # chosen messages once per part (3.5 million rows read for 7,000 returned in a thread of 1,000 messages);
    # ``= ANY(ARRAY(…))`` it applied as a filter over every part of the thread. ``owned`` (an init plan,
    # evaluated once) keeps the execution that only sets the caller from reading any part.
    if every_part:
        parts = select(kind(_LOAD_PART), _P.c.part_order, *no_message, no_head, *_PART_READ).where(
            _P.c.thread_id == thread_id, owned
        )
    else:
        of_message = (
            select(_P.c.part_order, *_PART_READ)
            .where(_P.c.thread_id == thread_id, _P.c.message_id == chosen.c.id)
            .offset(literal_column("0"))
            .lateral("of_message")
        )
        parts = (
            select(
                kind(_LOAD_PART),
                of_message.c.part_order,
                *no_message,
                no_head,
                *(of_message.c[column.name] for column in _PART_READ),
            )
            .select_from(chosen.join(of_message, true()))
            .where(chosen.c.content.is_(None), owned)
        )
    return union_all(
        select(kind(_LOAD_CALLER).label("kind"), no_key.label("key"), *no_message, caller.c.user_id, *no_part).where(
            ~read
        ),
        select(kind(_LOAD_THREAD), no_key, *no_message, thread.c.head_id, *no_part),
        select(kind(_LOAD_MESSAGE), chosen.c.seq, *chosen.c, no_head, *no_part),
        parts,
    )


def _thread_from_values(values: Mapping[str, Any]) -> Thread:
    return Thread(
        id=values["id"], user_id=values["user_id"], title=values["title"], status=values["status"],
        custom=values["custom"], head_id=None, local_id=values["local_id"], created_at=values["created_at"],
        updated_at=values["updated_at"],
    )  # fmt: skip


def _json_arg(value: Any) -> str | None:
    """A JSON column's value as asyncpg takes it on SQLAlchemy's connections (text), as :data:`JsonValue`
    would bind it: ``None`` is SQL NULL, ``JSON.NULL`` a JSON ``null``."""
    if value is None:
        return None
    return json_dumps(None if value is JSON.NULL else value)


#: The part columns :func:`_pg_insert_new_sql` reads from its parts document, and whether they hold JSON.
_PG_PART_COLUMNS = tuple((name, isinstance(_P.c[name].type, JSON)) for name in PART_COLUMNS)


def _pg_parts_document(part_rows: list[dict[str, Any]]) -> str:
    """The part rows as one JSON array of objects, column name → value, for ``json_to_recordset``: one
    parameter instead of one array per column (binding forty array parameters cost a third more client CPU).
    A JSON column's value goes as the text of its JSON (see :func:`_json_arg`), so a JSON ``null`` that must be
    kept (``"null"``) stays distinct from SQL NULL (an absent key); the statement casts it back to ``json``."""
    document = []
    for row in part_rows:
        item: dict[str, Any] = {}
        for column, is_json in _PG_PART_COLUMNS:
            value = row[column]
            if value is not None:
                item[column] = _json_arg(value) if is_json else value
        document.append(item)
    return orjson.dumps(document).decode()


def _pg_record_type(column: str) -> str:
    """The type a part column is read as from the parts document: unbounded (an explicit cast to ``varchar(n)``
    would cut a value that is too long, where the insert's own assignment cast refuses it, as on every other
    path), and text for JSON columns (their values are JSON texts, cast back in the statement)."""
    kind = _P.c[column].type
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, String | JSON):  # Text is a String
        return "text"
    raise TypeError(f"parts.{column}: no record type for {kind!r}")


def _pg_insert_args(
    user_id: str,
    now: datetime,
    *,
    write: bool = False,
    create: bool = False,
    thread_id: str | None = None,
    message_id: str | None = None,
    parent_id: str | None = None,
    format: str | None = None,
    role: str | None = None,
    metadata: str | None = None,
    content: str | None = None,
    extra: str | None = None,
    status: str | None = None,
    parts: str = "[]",
    stream: NewStream | None = None,
) -> list[Any]:
    """The parameters of one execution of :func:`_pg_insert_new_sql`, in their order (``$1`` … ``$19``)."""
    return [
        thread_id, message_id, parent_id, format, role, metadata, content, extra, status, now, user_id, write, parts,
        None if stream is None else stream.id, None if stream is None else stream.message_id,
        None if stream is None else stream.parent_id, None if stream is None else stream.owner, create,
        0 if stream is None else stream.max_active,
    ]  # fmt: skip


#: :func:`_pg_insert_new_sql`'s text for each user filter (one in production; the tests swap ``_owned``).
_pg_insert_new_cache: dict[Any, str] = {}


def _pg_insert_new_sql() -> str:
    """The statement of :meth:`ChatStore._insert_new_pg`. Parameters: ``$1`` thread, ``$2`` message, ``$3``
    parent, ``$4`` format, ``$5`` role, ``$6`` metadata, ``$7`` content, ``$8`` extra, ``$9`` status, ``$10``
    now, ``$11`` user, ``$12`` whether to write (else it only sets the caller), ``$13`` the parts
    (:func:`_pg_parts_document`), then a stream to register with the message (``$14`` its id, NULL for none,
    ``$15`` its reply's id, ``$16`` the reply's parent, ``$17`` its owner: see :class:`NewStream`), ``$18``
    whether to create the thread for the user (an empty thread, as :meth:`ChatStore.create_thread` makes it, unless
    the id is taken, by them or anyone), and ``$19`` the stream's ``max_active`` (0: no limit). Returns one row:
    the message's ``seq`` (NULL: nothing was written), the caller set, and whether the stream was admitted.

    Admission is :func:`admit_stream`'s, in one round trip: with ``$19``, every execution takes the user's
    advisory lock (the first one waits for it; taking it again costs nothing), and the thread and the message are
    written only if the user's active streams are fewer than ``$19``. That count is fresh in the executions that
    write (the only ones that count): each statement reads with a snapshot taken when it starts, after the first
    one was granted the lock.

    Hand-written because SQLAlchemy cannot say it (data-modifying CTEs, ``json_to_recordset``) and its statement
    building cost more than the database work; the user filter is still :func:`_owned`'s. Built once per
    process (asyncpg then prepares it once per connection).
    """
    sql = _pg_insert_new_cache.get(_owned)
    if sql is not None:
        return sql
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    user = cast(str, literal_column("$11::varchar"))
    owned = str(_owned(user).compile(dialect=dialect))
    active = str(_active_streams(user).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    names = ", ".join(name for name, _ in _PG_PART_COLUMNS)
    values = ", ".join(f"r.{name}::json" if is_json else f"r.{name}" for name, is_json in _PG_PART_COLUMNS)
    record = ", ".join(f"{name} {_pg_record_type(name)}" for name, _ in _PG_PART_COLUMNS)
    sql = (
        # set_caller's two settings, transaction-local; read below so that they are evaluated
        "WITH caller AS ("
        " SELECT set_config('chatkeep.user_id', $11::varchar, true) AS user_id,"
        " set_config('chatkeep.system', 'off', true) AS system"
        f"), admission_lock AS (SELECT pg_advisory_xact_lock({_ADMISSION_LOCKS}, hashtext($11::varchar))"
        " WHERE $19::int4 > 0"
        "), admitted AS ("
        f" SELECT CASE WHEN $19::int4 = 0 OR NOT ($12::bool OR $18::bool) THEN true ELSE ({active}) < $19::int4 END"
        " AS ok"
        "), new_thread AS ("
        " INSERT INTO threads (id, user_id, local_id, title, status, custom, head_id, message_seq, created_at,"
        " updated_at)"
        " SELECT $1::varchar, $11::varchar, NULL, NULL, 'regular', NULL, NULL, 0, $10::timestamptz, $10::timestamptz"
        " WHERE $18::bool AND (SELECT ok FROM admitted) ON CONFLICT DO NOTHING"
        "), thread AS ("
        f" SELECT message_seq FROM threads WHERE $12::bool AND threads.id = $1::varchar AND {owned} FOR UPDATE"
        "), m AS ("
        " INSERT INTO messages"
        " (thread_id, id, parent_id, seq, format, role, metadata, content, extra, status, created_at, updated_at)"
        " SELECT $1::varchar, $2::varchar, $3::varchar, thread.message_seq + 1, $4::varchar, $5::varchar,"
        " $6::json, $7::json, $8::json, $9::varchar, $10::timestamptz, $10::timestamptz FROM thread"
        " WHERE (SELECT ok FROM admitted) AND ($3::varchar IS NULL"
        " OR EXISTS (SELECT FROM messages AS parent WHERE parent.thread_id = $1::varchar AND parent.id = $3::varchar))"
        " ON CONFLICT (thread_id, id) DO NOTHING RETURNING seq"
        "), p AS ("
        f" INSERT INTO parts (thread_id, message_id, {names})"
        f" SELECT $1::varchar, $2::varchar, {values} FROM json_to_recordset($13::text::json) AS r({record})"
        " WHERE EXISTS (SELECT FROM m)"
        "), s AS ("
        " INSERT INTO streams (id, thread_id, message_id, parent_id, status, owner, stop_requested, chunk_count,"
        " created_at, updated_at)"
        " SELECT $14::varchar, $1::varchar, $15::varchar, $16::varchar, 'active', $17::varchar, false, 0,"
        " $10::timestamptz, $10::timestamptz FROM m WHERE $14::varchar IS NOT NULL"
        "), t AS ("
        " UPDATE threads SET message_seq = m.seq, head_id = $2::varchar, updated_at = $10::timestamptz"
        f" FROM m WHERE threads.id = $1::varchar AND {owned}"
        ")"
        " SELECT (SELECT seq FROM m), caller.user_id, caller.system, (SELECT ok FROM admitted),"
        " (SELECT count(*) FROM admission_lock) FROM caller"
    )
    _pg_insert_new_cache[_owned] = sql
    return sql


def _prepare_content(
    content: Mapping[str, Any] | BaseModel, format: str
) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """Validate ``content`` for its format and split it into message columns and part rows."""
    data = _content_dict(content)
    if is_ai_sdk_format(format):
        parse_ui_message_content(data, loc=("content",))
        columns, part_rows = content_to_message_columns(data)
        return columns, part_rows, data
    if not isinstance(data, dict):
        raise InvalidMessage([ValidationIssue(("content",), "must be a JSON object")])
    _check_text(data, ("content",))
    return {"role": None, "metadata_": None, "extra": None, "content": data}, [], data


def _content_dict(content: Mapping[str, Any] | BaseModel) -> Any:
    if isinstance(content, BaseModel):
        return content.model_dump(by_alias=True, exclude_unset=True)
    return content
