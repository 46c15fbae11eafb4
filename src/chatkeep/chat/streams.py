"""Live streams: one reply's chunks, fanned out to any number of readers, and kept where every process finds them.

* In the producing process, a :class:`LiveStream` keeps the reply's SSE frames in memory until they are in the
  log and its readers have been sent them: the ``POST /api/chat`` response follows it live with no database
  round trip, and a reader resuming there replays the frames already dropped from the log, then follows it live.
* A single flusher per process writes the new chunks of *all* live streams to the :class:`StreamLog` in one
  transaction every ``flush_interval`` (and moves their heartbeats on), so another process can replay and follow a
  stream, and a crash loses at most that interval of the chunk log.
* Another process follows a stream from the log, waking up on a :class:`~chatkeep.chat.brokers.Broker`
  notification (Redis pub/sub when configured and available) or, without one, every ``poll_interval``.
* Stopping works from any process: the producer's own process cancels it at once; another process flags the
  stream in the database and the producer's flusher sees the flag within one ``flush_interval``.
* A database outage stops nothing here: readers in the producing process keep following from memory (nothing
  is dropped from memory that the log does not hold), chunks and stream ends that cannot be written are kept in
  order and written by the flusher once the database is back, the sweeper retries, and a reader that needs the log
  waits for the database (up to ``stale_after``) before it ends with an ``error`` chunk.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta

from chatkeep.chat.brokers import Broker, LocalBroker
from chatkeep.errors import Conflict, DatabaseError, DatabaseUnavailable
from chatkeep.protocol.ids import generate_id
from chatkeep.protocol.stream import DONE, encode_sse
from chatkeep.store import NewStream
from chatkeep.store.streams import StreamInfo, StreamLog

__all__ = ["LiveStream", "StreamHub", "make_owner_id"]

log = logging.getLogger("chatkeep.streams")

#: What a reader gets when the database stays unavailable for ``stale_after`` while it needs the log.
_DATABASE_GONE = encode_sse({"type": "error", "errorText": "The database is unavailable; reload to resume the reply."})


def make_owner_id() -> str:
    """``host:pid:token``: names this process as a stream's producer."""
    return f"{socket.gethostname()}:{os.getpid()}:{generate_id(size=8)}"


def owner_is_dead(owner: str, *, me: str) -> bool:
    """Whether the process named ``owner`` is known to be gone: on this host, with a pid that no longer runs
    (or this very pid under another token: an earlier life of a restarted container). Other hosts are judged by
    their heartbeat instead."""
    if owner == me:
        return False
    host, pid_text = owner.split(":")[:2] if owner.count(":") >= 2 else ("", "")
    if host != me.split(":")[0] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class _Cursor:
    """Where a reader of a :class:`LiveStream` is: the offset of the first byte it has not been sent."""

    __slots__ = ("at",)

    def __init__(self, at: int) -> None:
        self.at = at


class LiveStream:
    """The frames of one reply in its producing process, as one byte buffer; readers follow it live.

    Invariants: ``ends[i]`` is where frame ``i`` ends in the stream's bytes (counted from its first byte); the
    first :attr:`chunks` frames are the reply's chunks, and once :attr:`done` the last frame is ``[DONE]`` and
    nothing is added. The first :attr:`logged` chunks are in the chunk log (the hub's bookkeeping). :attr:`data`
    holds the bytes from :attr:`base` on: :meth:`trim` drops those of logged frames that every reader has been
    sent, so a long reply's memory is what is not yet in the log (about one flush interval), not all of it; a
    reader joining later replays what was dropped from the log (:meth:`StreamHub.follow`).

    One buffer instead of a list of frames: a frame costs its bytes and an offset, not an object of its own plus
    a copy of its JSON waiting for the next flush (the log's rows are cut from the buffer when they are written),
    and a reader that falls behind is sent everything new in one write. A waiting reader waits on a future of
    its own, resolved by the next change.
    """

    __slots__ = ("id", "thread_id", "message_id", "data", "base", "ends", "logged", "done", "stop_reason", "task",
                 "_waiters", "_readers", "_closed")  # fmt: skip

    def __init__(self, id: str, thread_id: str, message_id: str) -> None:
        self.id = id
        self.thread_id = thread_id
        self.message_id = message_id
        self.data = bytearray()
        self.base = 0
        self.ends = array("L")
        self.logged = 0
        self.done = False
        #: why the producer was asked to end early: ``"stop"`` (a user) or ``"shutdown"`` (this process)
        self.stop_reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        #: the readers, each where it is: nothing a reader has not been sent is trimmed
        self._readers: set[_Cursor] = set()
        self._closed: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"LiveStream({self.id!r}, thread_id={self.thread_id!r}, frames={len(self.ends)}, done={self.done})"

    @property
    def chunks(self) -> int:
        """How many of the frames are chunks (all but a final ``[DONE]``)."""
        return len(self.ends) - 1 if self.done else len(self.ends)

    @property
    def first_kept(self) -> int:
        """The first frame :attr:`data` holds (those before it are in the log)."""
        return bisect.bisect_right(self.ends, self.base)

    def append(self, frame: bytes) -> None:
        """Add one chunk's frame (``data: <json>\\n\\n``)."""
        self.data += frame
        self.ends.append(self.base + len(self.data))
        self._wake()

    def chunk_json(self, index: int) -> str:
        """The JSON text of chunk ``index``, one not trimmed yet (its frame without ``data: `` and the blank
        line)."""
        start = (self.ends[index - 1] if index else 0) - self.base
        return self.data[start + 6 : self.ends[index] - self.base - 2].decode()

    def trim(self) -> None:
        """Drop the bytes of the logged frames that every reader has been sent."""
        keep_from = min([self.ends[self.logged - 1] if self.logged else 0, *(r.at for r in self._readers)])
        if keep_from > self.base:
            self.data = self.data[keep_from - self.base :]  # a new, smaller buffer: the old one is freed
            self.base = keep_from

    def close(self) -> None:
        """End the stream: ``[DONE]`` for its readers."""
        if self.done:
            return
        self.data += DONE
        self.ends.append(self.base + len(self.data))
        self.done = True
        self._wake()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        if self.done:
            return
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed)

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():  # a reader cancelled meanwhile cancelled its own future
                    waiter.set_result(None)

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def follow(self) -> AsyncGenerator[bytes, None]:
        """The stream's bytes from frame :attr:`first_kept` on (its first frame, unless trimmed), live, until
        ``[DONE]``: what is new each time it is awaited (one frame, or several when the reader fell behind). The
        reader holds its place from this call on, so nothing it still needs is trimmed meanwhile."""
        reader = _Cursor(self.base)
        self._readers.add(reader)
        return self._follow(reader)

    async def _follow(self, reader: _Cursor) -> AsyncGenerator[bytes, None]:
        try:
            while True:
                end = self.base + len(self.data)
                if reader.at < end:
                    chunk = bytes(self.data[reader.at - self.base :])
                    reader.at = end
                    yield chunk
                    continue
                if self.done:
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
        finally:
            self._readers.discard(reader)


class StreamHub:
    """The live streams of this process, their chunk log, and how to follow streams of other processes."""

    def __init__(
        self,
        stream_log: StreamLog,
        *,
        broker: Broker | None = None,
        flush_interval: float = 0.2,
        poll_interval: float = 0.25,
        heartbeat_interval: float = 2.0,
        stale_after: float = 30.0,
    ) -> None:
        self.log = stream_log
        self.broker: Broker = broker or LocalBroker()
        self.owner = make_owner_id()
        self.flush_interval = flush_interval
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.live: dict[str, LiveStream] = {}
        #: the streams with chunks not yet in the log (ended ones too), in the order they first had one
        self._dirty: dict[str, LiveStream] = {}
        #: ends (stream id → status) not yet written: the flusher writes each after the stream's last chunk
        self._ending: dict[str, str] = {}
        self._log_down = False
        self._flush_lock = asyncio.Lock()
        self._last_heartbeat = datetime.now(UTC)
        self._flusher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """For a long-running service: close what a dead earlier life of this process (or a dead neighbour on this
        host) left active, then keep sweeping for streams whose producer stopped beating. Later calls change nothing
        (a host app may still start the service itself, as chatkeep's library mode once asked it to)."""
        if self._sweeper is not None:
            return
        await self.broker.start()
        try:
            await self.recover()
        except DatabaseError as exc:  # (its text is the operator's account: which database, why)
            log.warning("could not close the streams a dead process left unfinished (%s); the sweep tries again", exc)
        except Exception:
            # Start-up never depends on the streams others left behind: the sweep closes them later.
            log.exception("could not close the streams a dead process left unfinished; the sweep tries again")
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def recover(self) -> list[StreamInfo]:
        orphans = await self.log.interrupt_orphans(lambda owner: owner_is_dead(owner, me=self.owner))
        for orphan in orphans:
            log.warning("stream %s of thread %s was left unfinished; marked interrupted", orphan.id, orphan.thread_id)
        return orphans

    def interrupt_all(self) -> None:
        """Ask every producer of this process to stop, as a shutdown does (their partial replies are stored
        ``interrupted`` and their streams end)."""
        for live in list(self.live.values()):
            live.request_stop("shutdown")

    async def close(self) -> None:
        """Interrupt this process's streams (their partial replies are stored), flush, and stop the loops."""
        self.interrupt_all()
        pending = [live.task for live in self.live.values() if live.task is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in (self._sweeper, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await self.flush()
        except DatabaseUnavailable as exc:
            # What is lost is the log's tail: the next process marks these streams interrupted (their replies
            # are stored, or rebuilt from the chunks the log has).
            log.warning("could not write the stream log on shutdown: %s", exc)
        await self.broker.close()

    # -- producing -------------------------------------------------------------------------------------------

    def prepare(
        self, *, thread_id: str, message_id: str, parent_id: str | None = None, max_active: int = 0
    ) -> tuple[LiveStream, NewStream]:
        """A live stream not yet registered, and its row (admitted only while the user has fewer than
        ``max_active`` active streams, when given): insert the row (with the turn's prompt:
        :meth:`ChatStore.write_messages` or :meth:`ChatStore.insert_new_message`), then :meth:`adopt` the stream."""
        stream = LiveStream(generate_id("stream"), thread_id, message_id)
        return stream, NewStream(stream.id, message_id, self.owner, parent_id, max_active)

    def adopt(self, stream: LiveStream) -> None:
        """Start publishing ``stream``, whose row is stored."""
        self.live[stream.id] = stream
        self._ensure_flusher()

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())

    def emit(self, stream: LiveStream, frame: bytes) -> None:
        """Publish one chunk (its SSE frame): to this process's readers now, to the log at the next flush."""
        stream.append(frame)
        self._dirty[stream.id] = stream

    async def finish(self, stream: LiveStream, status: str) -> None:
        """End the stream: every chunk is in the log before its status says it ended.

        This process's readers get ``[DONE]`` at once. When the database is unavailable, the end is kept and the
        flusher writes it, after the stream's remaining chunks, once the database is back (should this process
        die first, the next one marks the stream ``interrupted``, as after any crash).
        """
        self._ending[stream.id] = status
        try:
            await self.flush(ending=stream.id)
        except DatabaseUnavailable as exc:
            log.warning(
                "stream %s ended while the database is unavailable; its end is written later: %s", stream.id, exc
            )
        finally:
            self._close_locally(stream)
            if self._ending or self._dirty:
                self._ensure_flusher()
        await self.broker.notify(stream.id)

    def abandon(self, stream: LiveStream) -> None:
        """End the stream for this process's readers only, leaving it ``active`` in the log.

        For a reply that could not be stored in full: the stream gets no more heartbeats, so once the heartbeat is
        ``stale_after`` old the sweep (of any process) marks it ``interrupted`` and rebuilds the reply from its
        logged chunks, exactly as after a crash. Ending the stream in the log instead would leave the reply
        unstored. Its chunks not yet in the log are still written.
        """
        self._close_locally(stream)

    def _close_locally(self, stream: LiveStream) -> None:
        stream.close()
        self.live.pop(stream.id, None)

    async def flush(self, *, ending: str | None = None) -> None:
        """Write the pending chunks of every stream (and the live streams' heartbeats) in one transaction, then the
        pending stream ends. On failure nothing is lost: the rows and ends stay pending, in order, for the next
        try.

        With ``ending`` (a stream whose end is pending), it returns at once if a flush that ran while this one
        waited for its turn has written that end (with the stream's last chunks): streams that end together share
        one round trip instead of one each.
        """
        async with self._flush_lock:
            if ending is not None and ending not in self._ending:
                return
            dirty, self._dirty = self._dirty, {}
            marks = {stream: stream.chunks for stream in dirty.values()}  # what this batch writes, per stream
            rows = [
                (stream.id, seq, stream.chunk_json(seq))
                for stream, mark in marks.items()
                for seq in range(stream.logged, mark)
            ]
            now = datetime.now(UTC)
            beat = now - self._last_heartbeat >= timedelta(seconds=self.heartbeat_interval)
            heartbeat = list(self.live) if beat else []
            if not rows and not self.live and not self._ending:
                return
            # Every pending chunk is in this batch, so the streams that ended before it can end in the same
            # transaction, after their last chunks.
            ends = dict(self._ending)
            try:
                # Every live stream is checked each time (a stop request, a deleted thread), not only those with
                # new chunks: a producer waiting on a slow model must still hear it.
                try:
                    stopped = await self.log.append(rows, heartbeat, watch=list(self.live), ends=ends)
                except Conflict:
                    # A COMMIT whose answer was lost (the database went away at that moment) may have stored
                    # these rows after all: keep only those the log does not have, and write them.
                    rows = await self._not_yet_stored(rows)
                    stopped = await self.log.append(rows, heartbeat, watch=list(self.live), ends=ends)
            except Exception:
                self._dirty = {**dirty, **self._dirty}  # written by the next try, first
                raise
            for stream, mark in marks.items():
                stream.logged = mark
                stream.trim()
            for stream_id in ends:
                self._ending.pop(stream_id, None)
            if beat:
                self._last_heartbeat = now
            for stream_id in stopped:
                if (live := self.live.get(stream_id)) is not None:
                    live.request_stop("stop")
            for stream_id in {row[0] for row in rows}:
                await self.broker.notify(stream_id)

    async def _not_yet_stored(self, rows: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
        """The rows whose sequence number is at or beyond their stream's ``chunk_count`` (chunks are stored in
        order, in one transaction per flush, so those below it are in the log)."""
        stored: dict[str, int] = {}
        for stream_id in {row[0] for row in rows}:
            info = await self.log.get(stream_id)
            stored[stream_id] = info.chunk_count if info is not None else -1
        return [row for row in rows if stored[row[0]] >= 0 and row[1] >= stored[row[0]]]

    async def _flush_loop(self) -> None:
        """Runs while this process has live streams or anything left to write (so an idle process has no
        background work). Survives any failure: what could not be written is tried again next time."""
        while self.live or self._dirty or self._ending:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except DatabaseUnavailable as exc:
                if not self._log_down:  # once per outage, not every flush_interval
                    log.warning("the stream log cannot be written (%s); retrying every %g s", exc, self.flush_interval)
                self._log_down = True
            except Exception:
                log.exception("could not write the stream log; will retry")
            else:
                if self._log_down:
                    log.info("the stream log is written again")
                self._log_down = False

    async def _interrupt_stale(self, now: datetime) -> None:
        await self.log.interrupt_orphans(
            lambda owner: owner_is_dead(owner, me=self.owner), stale_before=now - timedelta(seconds=self.stale_after)
        )

    async def _trim(self, now: datetime) -> None:
        await self.log.trim(chunks_before=now - timedelta(minutes=1), streams_before=now - timedelta(days=1))

    async def _sweep_loop(self) -> None:
        """Never ends by itself: a failed sweep (the database is down, say) is retried at the next one. Closing
        orphans and trimming the log are tried apart, so neither failing stops the other."""
        while True:
            await asyncio.sleep(max(self.stale_after / 3, 1.0))
            now = datetime.now(UTC)
            for job in (self._interrupt_stale, self._trim):
                try:
                    await job(now)
                except DatabaseUnavailable as exc:
                    log.warning("stream housekeeping skipped, will retry: %s", exc)
                except Exception:
                    log.exception("stream housekeeping failed; will retry")

    # -- reading and stopping --------------------------------------------------------------------------------

    async def follow(self, user_id: str, thread_id: str) -> AsyncIterator[bytes] | None:
        """The newest active stream of the user's thread, replayed from its ``start`` chunk and followed to its
        end; ``None`` when nothing is streaming."""
        streams = await self.log.active(user_id, thread_id)
        if not streams:
            return None
        info = streams[0]
        live = self.live.get(info.id)
        if live is None:
            return self._follow_log(info)
        first_kept, reader = live.first_kept, live.follow()
        return reader if first_kept == 0 else self._replay_then_follow(info, first_kept, reader)

    async def _replay_then_follow(
        self, info: StreamInfo, frames: int, reader: AsyncGenerator[bytes, None]
    ) -> AsyncIterator[bytes]:
        """A live stream's first ``frames`` frames, trimmed from memory, from the log; then ``reader``. Through a
        database outage it waits (up to ``stale_after``), then ends with an ``error`` chunk, as
        :meth:`_follow_log` does."""
        down_since: float | None = None
        while True:
            try:
                logged = await self.log.chunks(info.id, -1)
                break
            except DatabaseUnavailable:
                now = asyncio.get_running_loop().time()
                down_since = now if down_since is None else down_since
                if now - down_since >= self.stale_after:
                    await reader.aclose()
                    yield _DATABASE_GONE
                    yield DONE
                    return
                await asyncio.sleep(self.poll_interval)
        for seq, chunk in logged:
            if seq < frames:
                yield b"data: " + chunk.encode() + b"\n\n"
        async for data in reader:
            yield data

    async def _follow_log(self, info: StreamInfo) -> AsyncIterator[bytes]:
        """Replay and follow a stream from the log. Through a database outage it keeps polling; if the database
        stays unavailable for ``stale_after``, it ends with an ``error`` chunk (the client may resume later)."""
        after = -1
        down_since: float | None = None
        with self.broker.watch(info.id) as news:
            while True:
                try:
                    for seq, chunk in await self.log.chunks(info.id, after):
                        after = seq
                        yield b"data: " + chunk.encode() + b"\n\n"
                    current = await self.log.get(info.id)
                    ended = current is None or current.status != "active"
                    stale = current is not None and current.updated_at < datetime.now(UTC) - timedelta(
                        seconds=self.stale_after
                    )
                    if ended or stale:
                        for seq, chunk in await self.log.chunks(info.id, after):
                            after = seq
                            yield b"data: " + chunk.encode() + b"\n\n"
                        yield DONE
                        return
                    down_since = None
                except DatabaseUnavailable:
                    now = asyncio.get_running_loop().time()
                    down_since = now if down_since is None else down_since
                    if now - down_since >= self.stale_after:
                        yield _DATABASE_GONE
                        yield DONE
                        return
                await news.wait(self.poll_interval)

    async def stop(self, user_id: str, thread_id: str, *, max_wait: float = 10.0) -> None:
        """Stop every active stream of the user's thread and wait (up to ``max_wait`` seconds) until they have ended."""
        streams = await self.log.active(user_id, thread_id)
        if not streams:
            return
        remote = []
        waits: list[Awaitable[object]] = []
        for info in streams:
            live = self.live.get(info.id)
            if live is not None:
                live.request_stop("stop")
                waits.append(live.wait_closed())
            else:
                remote.append(info.id)
        if remote:
            await self.log.request_stop(remote)
            waits.extend(self._until_ended(stream_id) for stream_id in remote)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), max_wait)

    async def _until_ended(self, stream_id: str) -> None:
        with self.broker.watch(stream_id) as news:
            while (info := await self.log.get(stream_id)) is not None and info.status == "active":
                await news.wait(self.poll_interval)
