"""Requests per user per minute: a fixed one-minute window, counted in Redis when configured (so every process
shares it) and available, else in this process's memory.

Fixed windows are coarse (a burst may straddle two windows) but cheap: one Redis round trip, or one dict lookup, per
request. Over the limit is a 429 with ``Retry-After`` set to the seconds left in the window.
"""

from __future__ import annotations

import time
from typing import Protocol

from chatkeep.chat.redis_link import RedisLink
from chatkeep.errors import TooManyRequests

__all__ = ["LocalWindow", "RateLimiter", "RedisWindow"]


class RateLimiter(Protocol):
    async def hit(self, user_id: str) -> None:
        """Count one request; raise :class:`TooManyRequests` over the limit."""
        ...


def _refuse(limit: int, window_end: float) -> TooManyRequests:
    return TooManyRequests(
        f"More than {limit} requests in a minute; slow down.", retry_after=int(window_end - time.time()) + 1
    )


class LocalWindow:
    def __init__(self, per_minute: int) -> None:
        self.limit = per_minute
        self._window = 0
        self._counts: dict[str, int] = {}

    async def hit(self, user_id: str) -> None:
        window = int(time.time() // 60)
        if window != self._window:  # a new minute: forget the old counts (bounded memory)
            self._window, self._counts = window, {}
        count = self._counts.get(user_id, 0) + 1
        self._counts[user_id] = count
        if count > self.limit:
            raise _refuse(self.limit, (window + 1) * 60)


class RedisWindow:
    """The window counted in Redis, shared by every process. While Redis is unavailable (see
    :class:`~chatkeep.chat.redis_link.RedisLink`: a failed call marks it so, until it answers again) requests are
    counted in this process instead, so a user is still limited, per process, rather than not at all."""

    def __init__(self, link: RedisLink, per_minute: int) -> None:
        self.limit = per_minute
        self.link = link
        self._fallback = LocalWindow(per_minute)

    async def hit(self, user_id: str) -> None:
        if self.link.up:
            window = int(time.time() // 60)
            key = f"chatkeep:rate:{window}:{user_id}"
            try:
                async with self.link.client.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, 120)
                    count, _ = await pipe.execute()
            except self.link.errors as exc:
                self.link.failed(exc)
            else:
                if int(count) > self.limit:
                    raise _refuse(self.limit, (window + 1) * 60)
                return
        await self._fallback.hit(user_id)
