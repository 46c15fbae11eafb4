"""Brokers: how a process hears at once that a stream of another process has news (else its readers poll the log).

A reader of another process's stream watches it (:meth:`Broker.watch`) before it first reads the log, and waits
for news between reads, up to its poll interval: news that comes while it reads is kept for its next wait, so no
wake-up is lost. Without a broker, or while Redis is unavailable, the waits simply last the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from chatkeep.chat.redis_link import RedisLink

__all__ = ["Broker", "LocalBroker", "News", "RedisBroker"]

log = logging.getLogger("chatkeep.streams")

#: How long the listener waits for a message before it pings Redis to check that it is still there.
_QUIET_PING_S = 5.0
#: The listener's first wait before it subscribes again after losing Redis (it doubles up to the link's
#: ``max_backoff``).
_FIRST_RETRY_S = 0.1


class News:
    """Whether a watched stream has had news since the watch began or since the last :meth:`wait`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def arrived(self) -> None:
        self._event.set()

    async def wait(self, max_wait: float) -> None:
        """Return once there is news (at once if some came since the last wait), or after ``max_wait`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), max_wait)
        self._event.clear()


class Broker(Protocol):
    """Wakes readers in other processes when a stream has news."""

    @property
    def degraded(self) -> bool:
        """Whether wake-ups across processes are off right now (readers poll)."""
        ...

    async def start(self) -> None: ...

    async def notify(self, stream_id: str) -> None: ...

    def watch(self, stream_id: str) -> AbstractContextManager[News]: ...

    async def close(self) -> None: ...


class LocalBroker:
    """No cross-process notifications: readers in other processes poll the log."""

    degraded = False

    async def start(self) -> None:
        return None

    async def notify(self, stream_id: str) -> None:
        return None

    @contextlib.contextmanager
    def watch(self, stream_id: str) -> Iterator[News]:
        yield News()  # no news ever comes: every wait lasts its max_wait

    async def close(self) -> None:
        return None


class RedisBroker:
    """Redis pub/sub on one channel per process group: a message names the stream that has news.

    Redis is never required. :meth:`start` returns at once and a listener subscribes in the background, and again
    whenever the subscription is lost (after Redis comes back: see :class:`RedisLink`), with a backoff; a quiet
    subscription is pinged every few seconds, so a Redis that stops answering is noticed too. While the listener
    is not subscribed, :attr:`degraded` is true and readers here poll; :meth:`notify` publishes only while the
    link is up, each call bounded by the link's timeout.
    """

    CHANNEL = "chatkeep:streams"

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._watches: dict[str, set[News]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = False

    @property
    def degraded(self) -> bool:
        return not self._listening

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        delay = _FIRST_RETRY_S
        while True:
            await self.link.wait_up()
            try:
                await self._listen()
            except Exception as exc:  # the listener must outlive anything Redis does
                if not isinstance(exc, self.link.errors):
                    log.exception("the Redis listener failed; it starts again")
                self.link.failed(exc)
            if self._listening:  # it had subscribed: start the backoff again
                delay = _FIRST_RETRY_S
                self._listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.link.max_backoff)

    async def _listen(self) -> None:
        """Subscribe and deliver messages until the connection fails (it raises then; it never returns)."""
        pubsub = self.link.client.pubsub()
        try:
            await pubsub.subscribe(self.CHANNEL)
            # SUBSCRIBE's answer: a Redis that accepts connections but never answers is caught here.
            if await pubsub.get_message(timeout=self.link.timeout) is None:
                raise TimeoutError(f"no answer to SUBSCRIBE within {self.link.timeout:g} s")
            self.link.answered()
            self._listening = True
            log.info("listening for stream news on Redis at %s", self.link.name)
            while True:
                message = await pubsub.get_message(timeout=_QUIET_PING_S)
                if message is None:  # quiet for a while: is Redis still there?
                    await pubsub.ping()
                    message = await pubsub.get_message(timeout=self.link.timeout)
                    if message is None:
                        raise TimeoutError(f"no answer to PING within {self.link.timeout:g} s")
                self._deliver(message)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return  # a subscription's confirmation, a PING's answer
        data = message["data"]
        stream_id = data.decode() if isinstance(data, bytes) else str(data)
        for news in self._watches.get(stream_id, ()):
            news.arrived()

    async def notify(self, stream_id: str) -> None:
        if not self.link.up:  # Redis is an accelerator: readers elsewhere poll the log meanwhile
            return
        try:
            await self.link.client.publish(self.CHANNEL, stream_id)
        except self.link.errors as exc:
            self.link.failed(exc)

    @contextlib.contextmanager
    def watch(self, stream_id: str) -> Iterator[News]:
        news = News()
        watches = self._watches.setdefault(stream_id, set())
        watches.add(news)
        try:
            yield news
        finally:
            watches.discard(news)
            if not watches:
                self._watches.pop(stream_id, None)

    async def close(self) -> None:
        """Stop listening (the link is its owner's to close)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._listening = False
