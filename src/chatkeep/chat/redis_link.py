"""``RedisLink``: one Redis server that chatkeep uses while it answers, and does without while it does not.

Redis only speeds chatkeep up across processes (wake-ups of stream readers, a request limit shared by every
process); everything it does has a behaviour without it. Guarantees:

* **Every call is bounded in time**: ``timeout`` for a command, ``connect_timeout`` for a connection, and no
  retries inside the client (redis-py's defaults wait 5 s and retry 10 times): a caller whose call fails takes its
  no-Redis path at once.
* **A failed call marks the link down**, and while it is down nobody calls Redis (a Redis that accepts connections
  but never answers would otherwise cost every request its timeout): callers ask :attr:`RedisLink.up` first. A
  probe in the background pings Redis, 0.1 s after the failure and then twice as long each time up to
  ``max_backoff``; its first answer marks the link up again.
* **Each transition is logged once** (a warning when Redis goes, an info line when it is back), naming the server
  by host and port only (a URL may hold a password); :attr:`RedisLink.degraded` tells a readiness check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisLink"]

log = logging.getLogger("chatkeep.redis")

#: The probe's first wait after a failure (it doubles up to ``max_backoff``).
_FIRST_PROBE_S = 0.1


class RedisLink:
    """A Redis client with bounded calls, and whether Redis answers right now (see the module docstring)."""

    def __init__(
        self, url: str, *, timeout: float = 0.5, connect_timeout: float = 1.0, max_backoff: float = 2.0
    ) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self.client: redis.Redis = redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, retry=Retry(NoBackoff(), 0)
        )
        #: what a failed call raises: redis-py's errors (its timeouts included) and the socket's
        self.errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self.timeout = timeout
        self.max_backoff = max_backoff
        where = self.client.connection_pool.connection_kwargs
        self.name = where.get("path") or f"{where.get('host', 'localhost')}:{where.get('port', 6379)}"
        self._up = asyncio.Event()
        self._up.set()  # until a call says otherwise
        self._probe: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """Whether to call Redis: no call has failed since it last answered."""
        return self._up.is_set()

    @property
    def degraded(self) -> bool:
        return not self.up

    async def wait_up(self) -> None:
        await self._up.wait()

    def failed(self, exc: BaseException) -> None:
        """A call failed: mark the link down (logged once per outage) and start probing for Redis's return."""
        if not self.up:
            return
        self._up.clear()
        log.warning(
            "Redis at %s is unavailable (%s): running without it until it answers again (readers of streams "
            "produced by other processes poll the database, request limits are counted per process)",
            self.name, str(exc) or type(exc).__name__,
        )  # fmt: skip
        self._probe = asyncio.create_task(self._probe_until_up())

    def answered(self) -> None:
        """A call succeeded: mark the link up (logged once per outage)."""
        if self.up:
            return
        self._up.set()
        log.info("Redis at %s answers again: using it", self.name)

    async def _probe_until_up(self) -> None:
        delay = _FIRST_PROBE_S
        while not self.up:
            await asyncio.sleep(delay)
            try:
                await self.client.ping()
            except Exception:  # whatever the failure, Redis is not back yet
                delay = min(delay * 2, self.max_backoff)
            else:
                self.answered()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.client.aclose()
