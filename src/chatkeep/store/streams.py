"""``StreamLog``: the replies being generated, and the chunks they have produced, in the database.

Every process can read what any process produced, so a client can resume a stream on another process, and a
reply survives its producer's crash up to the last flush. Guarantees:

* chunks of a stream have sequence numbers 0, 1, 2, … with no gaps; ``chunk_count`` is how many are stored;
* a stream's ``status`` leaves ``active`` exactly once (``done``, ``aborted``, ``error`` by its producer, or
  ``interrupted`` by whoever notices the producer died, ``error`` when its reply could not be rebuilt), and its
  chunks are all stored by then;
* a stream's ``parent_id`` names the message its reply goes under, and follows the tree as that message's
  children do (see :meth:`StreamLog.store_reply`);
* what a user asks (:meth:`StreamLog.active`) is scoped to that user; the rest is the service's own bookkeeping,
  keyed by stream ids that never leave the server, and runs as ``SYSTEM``;
* a chat turn registers its stream with its prompt, admitted against the user's limit of active streams in that
  same transaction (:func:`chatkeep.store.chat_store.admit_stream`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatkeep.errors import DatabaseUnavailable, ParentNotFound
from chatkeep.protocol.messages import content_of
from chatkeep.protocol.stream import MessageAssembler
from chatkeep.store._db import SYSTEM, Database, uncancellable
from chatkeep.store.chat_store import UNSET, ChatStore, NewStream, insert_stream
from chatkeep.store.models import MessageRow, PartRow, StreamChunkRow, StreamRow, ThreadRow

__all__ = ["StreamInfo", "StreamLog"]

log = logging.getLogger("chatkeep.store")

_S = cast(Table, StreamRow.__table__)
_C = cast(Table, StreamChunkRow.__table__)
_T = cast(Table, ThreadRow.__table__)
_M = cast(Table, MessageRow.__table__)
_P = cast(Table, PartRow.__table__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    id: str
    thread_id: str
    message_id: str
    status: str
    owner: str
    stop_requested: bool
    chunk_count: int
    updated_at: datetime


_INFO_COLUMNS = (
    _S.c.id, _S.c.thread_id, _S.c.message_id, _S.c.status, _S.c.owner, _S.c.stop_requested, _S.c.chunk_count,
    _S.c.updated_at,
)  # fmt: skip


#: :meth:`StreamLog.append` on PostgreSQL (see :meth:`StreamLog._append_pg`). ``$1`` whether to work (else it only
#: sets the system caller), ``$2`` the streams to check, ``$3``/``$4``/``$5`` the chunks' streams, sequence numbers
#: and texts, ``$6`` the streams whose heartbeat moves, ``$7``/``$8`` the streams that end and their statuses,
#: ``$9`` now. Returns the checked streams that exist, with their ``stop_requested`` (a first row of NULLs when
#: there are none), and leaves the rest of the logic as :meth:`StreamLog.append` has it: chunks of streams that
#: are gone are dropped, ``chunk_count`` moves to the last chunk, an end applies only to an ``active`` stream. One
#: UPDATE for counts, heartbeats and ends, since a statement may change a row only once. Hand-written: SQLAlchemy
#: cannot say data-modifying CTEs over ``unnest``.
_PG_APPEND = (
    "WITH caller AS ("
    " SELECT set_config('chatkeep.user_id', '', true) AS user_id, set_config('chatkeep.system', 'on', true) AS system"
    "), alive AS ("
    " SELECT id, stop_requested FROM streams WHERE $1::bool AND id = ANY($2::varchar[]) FOR SHARE"
    "), c AS ("
    " SELECT * FROM unnest($3::varchar[], $4::int8[], $5::text[]) AS c(stream_id, seq, chunk)"
    " WHERE c.stream_id IN (SELECT id FROM alive)"
    "), ins AS ("
    " INSERT INTO stream_chunks (stream_id, seq, chunk) SELECT stream_id, seq, chunk FROM c"
    "), counts AS ("
    " SELECT stream_id, max(seq) + 1 AS n FROM c GROUP BY stream_id"
    "), e AS ("
    " SELECT * FROM unnest($7::varchar[], $8::varchar[]) AS e(id, status) WHERE $1::bool"
    "), upd AS ("
    " UPDATE streams SET chunk_count = COALESCE(counts.n, streams.chunk_count),"
    " status = CASE WHEN e.status IS NOT NULL AND streams.status = 'active' THEN e.status ELSE streams.status END,"
    " updated_at = $9::timestamptz"
    " FROM (SELECT id FROM alive UNION SELECT id FROM e) AS a"
    " LEFT JOIN counts ON counts.stream_id = a.id LEFT JOIN e ON e.id = a.id"
    " WHERE streams.id = a.id AND (counts.n IS NOT NULL OR a.id = ANY($6::varchar[])"
    " OR (e.id IS NOT NULL AND streams.status = 'active'))"
    ")"
    " SELECT alive.id, alive.stop_requested FROM caller LEFT JOIN alive ON true"
)


def _end(stream_id: str, status: str) -> Update:
    """The statement that ends the stream with ``status`` if it is still ``active``."""
    return update(_S).where(_S.c.id == stream_id, _S.c.status == "active").values(status=status, updated_at=_now())


def _info(row: Any) -> StreamInfo:
    return StreamInfo(
        id=row.id, thread_id=row.thread_id, message_id=row.message_id, status=row.status, owner=row.owner,
        stop_requested=bool(row.stop_requested), chunk_count=int(row.chunk_count), updated_at=row.updated_at,
    )  # fmt: skip


class StreamLog(Database):
    @uncancellable
    async def create(
        self, *, stream_id: str, thread_id: str, message_id: str, owner: str, parent_id: str | None = None
    ) -> None:
        """Register an active stream of the reply ``message_id`` under ``parent_id`` (the thread must exist; the
        caller has checked it is the user's). A chat turn registers its stream with its prompt instead
        (:meth:`ChatStore.write_messages`)."""
        async with self._write(SYSTEM) as conn:
            await insert_stream(conn, thread_id, NewStream(stream_id, message_id, owner, parent_id))

    async def _append_pg(
        self,
        chunks: Sequence[tuple[str, int, str]],
        heartbeat: set[str],
        touched: set[str],
        ends: Mapping[str, str],
        now: datetime,
    ) -> set[str]:
        """:meth:`append` on PostgreSQL in one round trip: :data:`_PG_APPEND` executed twice in one pipeline, as
        ``ChatStore._insert_new_pg`` does (the first execution sets the system caller, the second does the work;
        one implicit transaction, all or nothing). The flusher writes every 200 ms, and every reply's end waits
        for one: seven round trips made it a tenth of the CPU of streaming."""
        ids = [row[0] for row in chunks]
        args = [
            True, list(touched), ids, [row[1] for row in chunks], [row[2] for row in chunks], list(heartbeat),
            list(ends), list(ends.values()), now,
        ]  # fmt: skip
        caller_only = [False, [], [], [], [], [], [], [], now]
        async with self._pg_driver() as driver:
            rows = await driver.fetchmany(_PG_APPEND, [caller_only, args])
        alive = {row[0]: row[1] for row in rows if row[0] is not None}
        return {stream_id for stream_id, stop in alive.items() if stop} | (touched - alive.keys())

    @uncancellable
    async def append(
        self,
        chunks: Sequence[tuple[str, int, str]],
        heartbeat: Iterable[str] = (),
        watch: Iterable[str] = (),
        ends: Mapping[str, str] | None = None,
    ) -> set[str]:
        """Store ``(stream_id, seq, chunk_json)`` rows of any number of streams in one transaction, move each
        stream's ``chunk_count`` and heartbeat on (also for the ``heartbeat`` streams without new chunks), and
        return the ids, among those and the ``watch`` ones, of the streams whose producer should stop: someone
        asked to stop them, or they are gone (their thread was deleted mid-reply; their chunks are dropped, so
        one deleted thread never blocks the other streams of the batch). Then, in the same transaction, the
        streams in ``ends`` (stream id → final status) leave ``active``, as :meth:`finish` does."""
        beating = {row[0] for row in chunks} | set(heartbeat)
        touched = beating | set(watch)
        if not touched and not ends:
            return set()
        now = _now()
        if self.dialect == "postgresql":
            return await self._append_pg(chunks, set(heartbeat), touched, ends or {}, now)
        async with self._write(SYSTEM) as conn:
            alive = select(_S.c.id, _S.c.stop_requested).where(_S.c.id.in_(touched))
            rows = (await conn.execute(alive)).all()
            existing = {row.id for row in rows}
            kept = [row for row in chunks if row[0] in existing]
            counts: dict[str, int] = {}
            for stream_id, seq, _ in kept:
                counts[stream_id] = max(counts.get(stream_id, 0), seq + 1)
            if kept:
                await conn.execute(insert(_C), [{"stream_id": s, "seq": q, "chunk": c} for s, q, c in kept])
            if counts:
                await conn.execute(
                    update(_S)
                    .where(_S.c.id == bindparam("sid"))
                    .values(chunk_count=bindparam("count"), updated_at=now),
                    [{"sid": sid, "count": count} for sid, count in counts.items()],
                )
            rest = [sid for sid in existing & beating if sid not in counts]
            if rest:
                await conn.execute(update(_S).where(_S.c.id.in_(rest)).values(updated_at=now))
            for status in sorted(set((ends or {}).values())):
                ending = [sid for sid, final in (ends or {}).items() if final == status]
                await conn.execute(
                    update(_S).where(_S.c.id.in_(ending), _S.c.status == "active").values(status=status, updated_at=now)
                )
            return {row.id for row in rows if row.stop_requested} | (touched - existing)

    @uncancellable
    async def finish(self, stream_id: str, status: str) -> None:
        async with self._write(SYSTEM) as conn:
            await conn.execute(_end(stream_id, status))

    async def get(self, stream_id: str) -> StreamInfo | None:
        async with self._read(SYSTEM) as conn:
            row = (await conn.execute(select(*_INFO_COLUMNS).where(_S.c.id == stream_id))).first()
        return _info(row) if row is not None else None

    async def active(self, user_id: str, thread_id: str) -> list[StreamInfo]:
        """The user's active streams in the thread, newest first."""
        query = (
            select(*_INFO_COLUMNS)
            .join(_T, _T.c.id == _S.c.thread_id)
            .where(_S.c.thread_id == thread_id, _T.c.user_id == user_id, _S.c.status == "active")
            .order_by(_S.c.created_at.desc())
        )
        async with self._read(user_id) as conn:
            return [_info(row) for row in (await conn.execute(query)).all()]

    async def chunks(self, stream_id: str, after: int) -> list[tuple[int, str]]:
        """The stored chunks with a sequence number above ``after``, in order."""
        query = select(_C.c.seq, _C.c.chunk).where(_C.c.stream_id == stream_id, _C.c.seq > after).order_by(_C.c.seq)
        async with self._read(SYSTEM) as conn:
            return [(int(row.seq), str(row.chunk)) for row in (await conn.execute(query)).all()]

    @uncancellable
    async def request_stop(self, stream_ids: Sequence[str]) -> None:
        async with self._write(SYSTEM) as conn:
            await conn.execute(update(_S).where(_S.c.id.in_(stream_ids)).values(stop_requested=True))

    async def interrupt_orphans(
        self, is_dead: Callable[[str], bool], *, stale_before: datetime | None = None
    ) -> list[StreamInfo]:
        """Mark ``interrupted`` the active streams whose producer is gone: ``is_dead(owner)``, or (when
        ``stale_before`` is given) no heartbeat since then, and return them. Each one's reply is rebuilt from its
        stored chunks (replayed as the client's reducer does, onto the stored message for a continuation), every
        part left open is closed, and it is stored as an ``interrupted`` message where the stream says it goes
        (see :meth:`store_reply`), so the thread reads as a normal, if cut short, conversation. A reply that is
        already stored in full (its producer died after storing it) is left as it is.

        Each stream is recovered in a transaction of its own, so none depends on another. One whose reply cannot
        be stored (whatever a user made of its thread) is logged and ends as ``error``, so it is not tried again;
        it is not returned. Only :class:`DatabaseUnavailable` stops the round (the rest waits for the next one).
        """
        async with self._read(SYSTEM) as conn:
            rows = (await conn.execute(select(*_INFO_COLUMNS).where(_S.c.status == "active"))).all()
        orphans = [
            _info(r) for r in rows if is_dead(r.owner) or (stale_before is not None and r.updated_at < stale_before)
        ]
        recovered = []
        for orphan in orphans:
            try:
                if await self._interrupt(orphan):
                    recovered.append(orphan)
            except DatabaseUnavailable:
                raise
            except Exception:
                log.exception(
                    "the reply of stream %s (message %s, thread %s) could not be rebuilt and is lost; its stream "
                    "ends as 'error'", orphan.id, orphan.message_id, orphan.thread_id,
                )  # fmt: skip
                await self.finish(orphan.id, "error")
        return recovered

    @uncancellable
    async def _interrupt(self, orphan: StreamInfo) -> bool:
        """End one orphaned stream as ``interrupted`` and store its rebuilt reply, in one transaction; False when
        it is not active any more (another process recovered it, or its thread is gone)."""
        messages = ChatStore(self.engine)
        async with self._write(SYSTEM) as conn:
            owner = (await conn.execute(select(_T.c.user_id).where(_T.c.id == orphan.thread_id))).scalar()
            if owner is None:
                return False
            # The thread first, then the stream row: the order every writer of both takes them in.
            await messages._lock_thread(conn, owner, orphan.thread_id)
            if (await conn.execute(_end(orphan.id, "interrupted"))).rowcount == 0:
                return False
            await self._rebuild(conn, messages, orphan, owner)
        return True

    async def _rebuild(self, conn: AsyncConnection, messages: ChatStore, orphan: StreamInfo, owner: str) -> None:
        where = (_M.c.thread_id == orphan.thread_id, _M.c.id == orphan.message_id)
        stored = (await conn.execute(select(_M.c.status, _M.c.updated_at).where(*where))).first()
        if stored is not None and stored.status == "streaming":
            # A checkpoint (``ChatService(checkpoint_interval=…)``): close it as it is.
            parts = (_P.c.thread_id == orphan.thread_id, _P.c.message_id == orphan.message_id)
            await conn.execute(update(_P).where(*parts, _P.c.text_state == "streaming").values(text_state="done"))
            await conn.execute(
                update(_P).where(*parts, _P.c.reasoning_state == "streaming").values(reasoning_state="done")
            )
            await conn.execute(update(_M).where(*where).values(status="interrupted", updated_at=_now()))
            return
        started = (await conn.execute(select(_S.c.created_at).where(_S.c.id == orphan.id))).scalar_one()
        if stored is not None and stored.updated_at >= started:
            return  # stored in full by its producer, which died before it could end the stream
        base = None
        if stored is not None:  # a continuation: the chunks continue the stored message
            loaded, _ = await messages._load_messages(conn, orphan.thread_id, _M.c.id == orphan.message_id)
            base = loaded[0].content
        assembler = MessageAssembler(orphan.message_id, base=base)
        for chunk in await self._chunk_texts(conn, orphan.id):
            with contextlib.suppress(ValueError, KeyError, TypeError):  # passed over, as the client's reducer would
                assembler.apply(json.loads(chunk))
        reply = assembler.message
        for part in reply["parts"]:
            if part.get("type") in ("text", "reasoning") and part.get("state") == "streaming":
                part["state"] = "done"
        if not reply["parts"]:
            return
        await self._store_where_it_goes(
            conn, messages, orphan.id, owner, orphan.thread_id, orphan.message_id, content_of(reply), "interrupted"
        )

    @uncancellable
    async def store_reply(
        self,
        stream_id: str,
        *,
        user_id: str,
        thread_id: str,
        message_id: str,
        content: Mapping[str, Any],
        status: str | None,
    ) -> None:
        """Store the reply of the user's stream ``stream_id`` (``content``: the UIMessage without ``id``) where
        its stream says it goes now, in one transaction: for a producer whose reply lost its parent while it was
        generated (:class:`ParentNotFound`). The stream's ``parent_id`` follows the tree
        (:meth:`ChatStore.delete_message` moves it up with the deleted message's children, an edit keeps it under
        the old version), so the reply lands under the nearest message that is left. Should even that be gone (a
        stream registered before parents were moved), the reply keeps its stored place (a continuation) or
        becomes a root of the thread: it is never dropped. :class:`ThreadNotFound` when the thread is gone."""
        messages = ChatStore(self.engine)
        async with self._write(user_id) as conn:
            await messages._lock_thread(conn, user_id, thread_id)
            await self._store_where_it_goes(conn, messages, stream_id, user_id, thread_id, message_id, content, status)

    async def _store_where_it_goes(
        self,
        conn: AsyncConnection,
        messages: ChatStore,
        stream_id: str,
        user_id: str,
        thread_id: str,
        message_id: str,
        content: Mapping[str, Any],
        status: str | None,
    ) -> None:
        """:meth:`store_reply` in ``conn``, which holds the thread's lock (so the stream's ``parent_id`` read here
        is the one a concurrent :meth:`ChatStore.delete_message` left)."""
        row = (await conn.execute(select(_S.c.parent_id).where(_S.c.id == stream_id))).first()
        if row is not None:
            try:
                await messages._store_reply(conn, user_id, thread_id, message_id, row.parent_id, content, status)
                return
            except ParentNotFound:  # raised before anything is written: the transaction goes on
                pass
        log.warning(
            "the parent of reply %s in thread %s is gone: the reply is stored where it was, or as a root of the thread",
            message_id, thread_id,
        )  # fmt: skip
        await messages._store_reply(conn, user_id, thread_id, message_id, UNSET, content, status)

    async def _chunk_texts(self, conn: AsyncConnection, stream_id: str) -> list[str]:
        query = select(_C.c.chunk).where(_C.c.stream_id == stream_id).order_by(_C.c.seq)
        return [str(row.chunk) for row in (await conn.execute(query)).all()]

    @uncancellable
    async def trim(self, *, chunks_before: datetime, streams_before: datetime) -> None:
        """Delete the chunks of streams that ended before ``chunks_before`` (their replies are stored in full)
        and the rows of streams that ended before ``streams_before``."""
        async with self._write(SYSTEM) as conn:
            ended = select(_S.c.id).where(_S.c.status != "active", _S.c.updated_at < chunks_before)
            await conn.execute(delete(_C).where(_C.c.stream_id.in_(ended)))
            await conn.execute(delete(_S).where(_S.c.status != "active", _S.c.updated_at < streams_before))


def stale(seconds: float) -> datetime:
    """The moment ``seconds`` ago (for ``stale_before``)."""
    return _now() - timedelta(seconds=seconds)
