"""``Transfer``: a user's data out and in (JSON-able records, one per thread), and erasing a user.

The record of one thread (``version`` 1)::

    {"version": 1,
     "thread": {"id", "title", "status", "custom", "localId", "headId", "createdAt", "updatedAt"},
     "messages": [{"id", "parent_id", "format", "content", "created_at", "status"}, ...]}

``messages`` lists every message of every branch, parents before children (the stored order); ``content`` is
exactly what ``GET /api/threads/{id}/messages`` gives (the UIMessage without ``id`` for ``ai-sdk/v5`` and
``ai-sdk/v6``, verbatim otherwise); ``status`` is ``complete``, ``interrupted``, ``aborted`` or ``error``.
Timestamps are written as the API writes them (:func:`chatkeep.protocol.timestamps.iso`: UTC, ending in ``Z``),
with microseconds (``2026-01-02T03:04:05.123456Z``), which is everything the database keeps of them; any ISO 8601
timestamp with a UTC offset is read. The record holds no user id: it is imported for whoever is named then.

Guarantees:

* **Lossless.** Importing an export recreates each thread with the same ids, title, status, custom data, local
  id, active branch, timestamps, and messages with the same ids, parents, formats, contents, statuses and
  creation times; exporting it again gives the same records. (A message's ``updated_at`` is not exported: an
  imported message has ``updated_at == created_at``. Order keys are renumbered 1…n without gaps; the thread's
  ``message_seq`` is set so later messages come after them.)
* **Streaming export.** :meth:`Transfer.export_user` reads threads in keyset pages (oldest first, by
  ``(created_at, id)``), each page in one read transaction (a consistent snapshot, also on PostgreSQL), and
  never holds a connection while the caller consumes a record. A reply still being generated is exported as
  ``interrupted``: the copy can never resume it.
* **One record, one transaction.** A record is validated completely first and then written in one transaction,
  so it is stored whole or not at all. A bad record is reported with its line number and the import goes on
  with the next one.
* **What the API accepts, no more.** A line is parsed as the API parses a request body
  (:func:`~chatkeep.protocol.strict_json.parse_json`: no number beyond a double, nesting bounded); every thread
  and message id must be one the API lets a client choose (:func:`~chatkeep.protocol.ids.check_new_id`: no
  ``/``, so each stays addressable); each message's content gets the same validation and part mapping as
  :meth:`ChatStore.upsert_message` and the API's size limits, the title the API's length limit
  (:mod:`chatkeep.protocol.limits`, with the limits the :class:`Transfer` is given).
* **Scoped to the user.** An import only ever creates, skips or replaces threads of the user it imports for. A
  thread id that another user has is refused for that record: that user's thread is neither changed nor shown
  (the report says only that the id is taken). :meth:`Transfer.delete_user` deletes exactly that user's threads
  with every row that hangs off them (messages, parts, streams, stream chunks).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias, cast

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictStr, ValidationError
from sqlalchemy import Table, delete, func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatkeep.errors import ChatkeepError, Conflict, InvalidInput, PayloadTooLarge, ValidationIssue
from chatkeep.protocol.ids import check_new_id
from chatkeep.protocol.limits import SizeLimits, check_message_size, check_title
from chatkeep.protocol.messages import find_forbidden_characters
from chatkeep.protocol.strict_json import has_non_finite_number, parse_json
from chatkeep.protocol.timestamps import iso
from chatkeep.store._db import SYSTEM, Database, set_caller, uncancellable
from chatkeep.store._errors import wrap_db_errors
from chatkeep.store.chat_store import ChatStore, _prepare_content
from chatkeep.store.models import ID_LENGTH, MessageRow, PartRow, ThreadRow

__all__ = [
    "RECORD_VERSION",
    "ImportReport",
    "MessageRecord",
    "OnConflict",
    "Outcome",
    "RecordResult",
    "ThreadExists",
    "ThreadExport",
    "ThreadRecord",
    "Transfer",
    "UserData",
    "encode_record",
]

#: The version of the record format written by :meth:`Transfer.export_user`.
RECORD_VERSION: Final = 1
OnConflict: TypeAlias = Literal["skip", "replace", "fail"]
Outcome: TypeAlias = Literal["imported", "replaced", "skipped", "refused"]

_T = cast(Table, ThreadRow.__table__)
_M = cast(Table, MessageRow.__table__)
_THREAD_COLUMNS = (
    _T.c.id, _T.c.title, _T.c.status, _T.c.custom, _T.c.local_id, _T.c.head_id, _T.c.created_at, _T.c.updated_at,
)  # fmt: skip
_FORMAT_LENGTH: Final = 64
_SHOWN_ISSUES: Final = 5


class ThreadExists(Conflict):
    """An imported thread id is already one of the user's threads, and ``on_conflict="fail"`` was asked."""

    code = "thread_exists"

    def __init__(self, line: int, thread_id: str) -> None:
        super().__init__(
            f"line {line}: thread {thread_id!r} already exists for this user (on conflict: fail); "
            "the records before it were imported, this one and the rest were not."
        )
        self.line = line
        self.thread_id = thread_id


@dataclass(frozen=True, slots=True)
class UserData:
    """How much of a user's data there is (or was, for :meth:`Transfer.delete_user`)."""

    threads: int
    messages: int


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What happened to one record of an import.

    ``line`` counts from 1 over everything given (blank lines included), so it is the line number of a file.
    ``error`` says why a ``refused`` record was not imported.
    """

    line: int
    thread_id: str | None
    outcome: Outcome
    error: ChatkeepError | None = None

    def describe(self) -> str:
        """One line for people: ``line 3 (thread 't1'): messages[0].content.role: Field required``."""
        where = f"line {self.line}" + (f" (thread {self.thread_id!r})" if self.thread_id is not None else "")
        if isinstance(self.error, InvalidInput):
            shown = [
                f"{issue.location()}: {issue.message}" if issue.loc else issue.message
                for issue in self.error.issues[:_SHOWN_ISSUES]
            ]
            more = len(self.error.issues) - len(shown)
            return f"{where}: {'; '.join(shown)}" + (f" (and {more} more)" if more else "")
        if self.error is not None:
            return f"{where}: {self.error.message}"
        return f"{where}: {self.outcome}"


@dataclass(slots=True)
class ImportReport:
    """The outcome of :meth:`Transfer.import_records`, record by record."""

    results: list[RecordResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def problems(self) -> list[RecordResult]:
        """The refused records, in order."""
        return [result for result in self.results if result.outcome == "refused"]


# -- the record format -----------------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError("needs a UTC offset (e.g. '+00:00' or 'Z')")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return iso(moment, timespec="microseconds")


Timestamp: TypeAlias = Annotated[datetime, PlainValidator(_timestamp)]
Id: TypeAlias = Annotated[StrictStr, Field(min_length=1, max_length=ID_LENGTH)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThreadRecord(_Record):
    id: Id
    title: StrictStr | None = None
    status: Literal["regular", "archived"] = "regular"
    custom: Any = None
    local_id: Id | None = Field(default=None, alias="localId")
    head_id: Id | None = Field(default=None, alias="headId")
    created_at: Timestamp = Field(alias="createdAt")
    updated_at: Timestamp = Field(alias="updatedAt")


class MessageRecord(_Record):
    id: Id
    parent_id: Id | None = None
    format: Annotated[StrictStr, Field(min_length=1, max_length=_FORMAT_LENGTH)]
    content: dict[str, Any]
    created_at: Timestamp
    status: Literal["complete", "interrupted", "aborted", "error"] = "complete"


class ThreadExport(_Record):
    """One record: a thread and all its messages."""

    version: Literal[1]
    thread: ThreadRecord
    messages: list[MessageRecord]


@dataclass(frozen=True, slots=True)
class _Prepared:
    record: ThreadExport
    rows: list[dict[str, Any]]
    parts: list[dict[str, Any]]


#: Characters some line readers (Python's ``str.splitlines``, ECMAScript before 2019) take for line breaks; JSON
#: allows them raw inside strings, so they are written escaped and a record is always exactly one line.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as a line of JSON lines: compact UTF-8 JSON ending in ``\\n``, with no other line break in it."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS).encode() + b"\n"


def _parse_line(raw: Any) -> Any:
    """A line parsed as the API parses a request body; a record given parsed already must hold only numbers JSON
    can represent (no ``inf``, no ``nan``)."""
    if not isinstance(raw, str | bytes):
        if has_non_finite_number(raw):
            raise InvalidInput([ValidationIssue((), "a number is not finite (JSON has no inf or nan)")])
        return raw
    if isinstance(raw, bytes):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput([ValidationIssue((), f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    else:
        raw = raw.encode("utf-8", "surrogatepass")  # a lone surrogate stays, for the parser to refuse
    try:
        return parse_json(raw)
    except ValueError as exc:
        raise InvalidInput([ValidationIssue((), f"not JSON: {exc}")]) from None


def _thread_id_of(data: Any) -> str | None:
    """The thread id of a record, if it has a readable one (for reports about records that fail validation)."""
    if isinstance(data, Mapping):
        thread = data.get("thread")
        if isinstance(thread, Mapping) and isinstance(thread.get("id"), str):
            return cast(str, thread["id"])
    return None


def _validate(data: Any, limits: SizeLimits | None) -> _Prepared:
    """Check a whole record and turn it into rows, or raise :class:`InvalidInput` naming every issue found (or
    :class:`PayloadTooLarge` naming the first place over a limit)."""
    if not isinstance(data, Mapping):
        raise InvalidInput([ValidationIssue((), "a record must be a JSON object")])
    forbidden = find_forbidden_characters(data)
    if forbidden:
        raise InvalidInput(forbidden)
    try:
        record = ThreadExport.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            [ValidationIssue(tuple(err["loc"]), str(err["msg"]), str(err["type"])) for err in exc.errors()]
        ) from None
    issues: list[ValidationIssue] = []
    seen: set[str] = set()
    ids: list[tuple[tuple[str | int, ...], str]] = [(("thread", "id"), record.thread.id)]
    ids += [(("messages", i, "id"), message.id) for i, message in enumerate(record.messages)]
    for loc, value in ids:
        try:
            check_new_id(value, loc)
        except InvalidInput as exc:
            issues.extend(exc.issues)
    for i, message in enumerate(record.messages):
        if message.id in seen:
            issues.append(ValidationIssue(("messages", i, "id"), f"message id {message.id!r} appears twice"))
        elif message.parent_id is not None and message.parent_id not in seen:
            issues.append(
                ValidationIssue(
                    ("messages", i, "parent_id"),
                    f"{message.parent_id!r} is not an earlier message of the record (parents come first)",
                )
            )
        seen.add(message.id)
    head = record.thread.head_id
    if head is not None and head not in seen:
        issues.append(ValidationIssue(("thread", "headId"), f"{head!r} is not a message of the record"))
    if issues:
        raise InvalidInput(issues)
    if limits is not None:
        check_title(record.thread.title, limits, ("thread", "title"))
        for i, message in enumerate(record.messages):
            check_message_size(message.content, limits, ("messages", i, "content"))
    rows: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    thread_id = record.thread.id
    for seq, message in enumerate(record.messages, start=1):
        try:
            columns, part_rows, _ = _prepare_content(message.content, message.format)
        except InvalidInput as exc:
            raise type(exc)(
                [ValidationIssue(("messages", seq - 1, *issue.loc), issue.message, issue.type) for issue in exc.issues]
            ) from None
        rows.append(
            {
                "thread_id": thread_id,
                "id": message.id,
                "parent_id": message.parent_id,
                "seq": seq,
                "format": message.format,
                "role": columns["role"],
                "metadata": columns["metadata_"],
                "content": columns["content"],
                "extra": columns["extra"],
                "status": None if message.status == "complete" else message.status,
                "created_at": message.created_at,
                "updated_at": message.created_at,
            }
        )
        for part in part_rows:
            part["thread_id"] = thread_id
            part["message_id"] = message.id
        parts.extend(part_rows)
    return _Prepared(record, rows, parts)


def _record(thread: Any, messages: Iterable[Any]) -> dict[str, Any]:
    return {
        "version": RECORD_VERSION,
        "thread": {
            "id": thread.id,
            "title": thread.title,
            "status": thread.status,
            "custom": thread.custom,
            "localId": thread.local_id,
            "headId": thread.head_id,
            "createdAt": _iso(thread.created_at),
            "updatedAt": _iso(thread.updated_at),
        },
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "format": m.format,
                "content": m.content,
                "created_at": _iso(m.created_at),
                # the copy can never resume a reply that is still being generated: it reads as cut short
                "status": "interrupted" if m.status == "streaming" else m.status or "complete",
            }
            for m in messages
        ],
    }


# -- the store -------------------------------------------------------------------------------------------------


class Transfer(Database):
    """Export, import and erase users' data; build it on the engine of a :class:`ChatStore` (``store.engine``).

    ``limits`` are the size limits an import applies, as the API does (``chatkeep import`` passes the server's
    :class:`~chatkeep.settings.Settings`); without them, records are not checked against any size limit (as
    :class:`ChatStore` itself does not check what it is given).
    """

    def __init__(self, engine: AsyncEngine, *, limits: SizeLimits | None = None) -> None:
        super().__init__(engine)
        self._messages = ChatStore(engine)
        self._limits = limits

    @asynccontextmanager
    async def _snapshot(self, user_id: str) -> AsyncIterator[AsyncConnection]:
        """A read transaction of the user whose statements all see one snapshot (SQLite's always do)."""
        async with wrap_db_errors(), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await set_caller(conn, user_id)
                yield conn

    async def count_user(self, user_id: str) -> UserData:
        """How many threads and messages the user has."""
        async with self._read(user_id) as conn:
            return await self._count(conn, user_id)

    async def _count(self, conn: AsyncConnection, user_id: str) -> UserData:
        threads = (await conn.execute(select(func.count()).select_from(_T).where(_T.c.user_id == user_id))).scalar()
        messages = (
            await conn.execute(
                select(func.count())
                .select_from(_M)
                .where(_M.c.thread_id.in_(select(_T.c.id).where(_T.c.user_id == user_id)))
            )
        ).scalar()
        return UserData(threads=int(threads or 0), messages=int(messages or 0))

    @uncancellable
    async def delete_user(self, user_id: str) -> UserData:
        """Delete every thread of the user, with all their messages, parts, streams, stream chunks and tool
        approvals, in one transaction; return how many threads and messages there were. Nothing of any other user
        is touched."""
        async with self._write(user_id) as conn:
            counts = await self._count(conn, user_id)
            # messages, parts, streams, stream chunks and tool approvals go with their thread (ON DELETE CASCADE)
            await conn.execute(delete(_T).where(_T.c.user_id == user_id))
            return counts

    # -- export ----------------------------------------------------------------------------------------------

    async def export_user(self, user_id: str, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        """One record per thread of the user (see the module docstring), oldest thread first.

        Threads are read ``page_size`` at a time; a thread created while the export runs is included if it sorts
        after the page being read. Each record is built from one snapshot, so its head and parents always name
        messages it holds.
        """
        if page_size < 1:
            raise InvalidInput([ValidationIssue(("page_size",), "must be at least 1")])
        after: tuple[datetime, str] | None = None
        while True:
            query = select(*_THREAD_COLUMNS).where(_T.c.user_id == user_id)
            if after is not None:
                created, last_id = after
                # a row comparison, which the index (user_id, created_at, id) answers by one range: the same
                # condition spelled with OR is a filter over every thread of the user, read again for each page
                query = query.where(tuple_(_T.c.created_at, _T.c.id) > tuple_(created, last_id))
            query = query.order_by(_T.c.created_at, _T.c.id).limit(page_size)
            async with self._snapshot(user_id) as conn:
                threads = (await conn.execute(query)).all()
                records = [
                    _record(thread, (await self._messages._load_messages(conn, thread.id, None))[0])
                    for thread in threads
                ]
            for record in records:
                yield record
            if len(threads) < page_size:
                return
            after = (threads[-1].created_at, threads[-1].id)

    # -- import ----------------------------------------------------------------------------------------------

    async def import_records(
        self,
        user_id: str,
        records: Iterable[str | bytes | Mapping[str, Any]] | AsyncIterable[str | bytes | Mapping[str, Any]],
        *,
        on_conflict: OnConflict = "skip",
        on_record: Callable[[RecordResult], None] | None = None,
    ) -> ImportReport:
        """Import records for ``user_id``: JSON lines (``str``/``bytes``) or already parsed records.

        Each record is validated, then written in one transaction with the same ids, tree, contents, statuses
        and timestamps. A thread id the user already has is skipped (``"skip"``), deleted and imported again
        (``"replace"``), or stops the import with :class:`ThreadExists` (``"fail"``; the records before it stay
        imported). A record that is not valid (or not what the API would accept, see the module docstring), whose
        thread id another user has, or whose ``localId`` another of the user's threads has, is ``refused``:
        reported with its line number, nothing of it stored, and the import goes on. Blank lines are passed over
        (and counted). ``on_record`` is called after each record.

        Raises:
            ThreadExists: with ``on_conflict="fail"``, at the first thread id the user already has.
            DatabaseUnavailable: the database could not be reached (records before were imported).
        """
        if on_conflict not in ("skip", "replace", "fail"):
            raise InvalidInput([ValidationIssue(("on_conflict",), "must be 'skip', 'replace' or 'fail'")])
        user_issues = find_forbidden_characters(user_id, ("user_id",))
        if user_issues or not user_id:
            raise InvalidInput(user_issues or [ValidationIssue(("user_id",), "must not be empty")])
        report = ImportReport()
        line = 0
        async for raw in _aiter(records):
            line += 1
            if isinstance(raw, str | bytes) and not raw.strip():
                continue
            result = await self._import_one(user_id, line, raw, on_conflict)
            report.results.append(result)
            if on_record is not None:
                on_record(result)
        return report

    async def _import_one(
        self, user_id: str, line: int, raw: str | bytes | Mapping[str, Any], on_conflict: OnConflict
    ) -> RecordResult:
        thread_id: str | None = None
        try:
            data = _parse_line(raw)
            thread_id = _thread_id_of(data)
            prepared = _validate(data, self._limits)
            outcome = await self._write_record(user_id, line, prepared, on_conflict)
        except ThreadExists:
            raise
        except (InvalidInput, PayloadTooLarge, Conflict) as exc:
            return RecordResult(line, thread_id, "refused", exc)
        return RecordResult(line, thread_id, outcome)

    @uncancellable
    async def _write_record(self, user_id: str, line: int, prepared: _Prepared, on_conflict: OnConflict) -> Outcome:
        thread = prepared.record.thread
        async with self._write(SYSTEM) as conn:
            # Thread ids are global: whose is this one? Asked as the system (the user cannot see another user's
            # thread), then the rest of the transaction acts as the user.
            query = select(_T.c.user_id).where(_T.c.id == thread.id)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            owner = (await conn.execute(query)).first()
            await set_caller(conn, user_id)
            outcome: Outcome = "imported"
            if owner is not None:
                if owner.user_id != user_id:
                    raise Conflict(f"thread id {thread.id!r} belongs to another user; this record was not imported")
                if on_conflict == "skip":
                    return "skipped"
                if on_conflict == "fail":
                    raise ThreadExists(line, thread.id)
                await conn.execute(delete(_T).where(_T.c.id == thread.id, _T.c.user_id == user_id))
                outcome = "replaced"
            if thread.local_id is not None:
                clash = await conn.execute(
                    select(_T.c.id).where(_T.c.user_id == user_id, _T.c.local_id == thread.local_id)
                )
                if (other := clash.first()) is not None:
                    raise Conflict(
                        f"localId {thread.local_id!r} is already used by the user's thread {other.id!r}; "
                        "this record was not imported"
                    )
            await conn.execute(
                insert(_T).values(
                    id=thread.id,
                    user_id=user_id,
                    local_id=thread.local_id,
                    title=thread.title,
                    status=thread.status,
                    custom=thread.custom,
                    head_id=thread.head_id,
                    message_seq=len(prepared.rows),
                    created_at=thread.created_at,
                    updated_at=thread.updated_at,
                )
            )
            if prepared.rows:
                await conn.execute(insert(_M), prepared.rows)
            if prepared.parts:
                await conn.execute(insert(cast(Table, PartRow.__table__)), prepared.parts)
            return outcome


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
