"""FastAPI dependencies, as ``Annotated`` aliases, and the state chatkeep keeps on the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from chatkeep.api.auth import Authenticator
from chatkeep.api.limits import RateLimiter
from chatkeep.chat.redis_link import RedisLink
from chatkeep.chat.service import ChatService
from chatkeep.settings import Settings
from chatkeep.store import ChatStore

__all__ = [
    "After",
    "ChatDep",
    "ChatkeepState",
    "FormatQuery",
    "get_chat",
    "get_settings",
    "Limit",
    "MessageIdPath",
    "SettingsDep",
    "StoreDep",
    "ThreadIdPath",
    "get_store",
]


# The dependencies are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in a worker
# thread, and three thread hops per request were a fifth of the CPU of a request that stores a message.


@dataclass
class ChatkeepState:
    """What the routes need, kept on ``app.state.chatkeep``."""

    store: ChatStore
    settings: Settings
    authenticator: Authenticator
    chat: ChatService
    limiter: RateLimiter | None = None
    #: the Redis that the default chat service and the request limiter share (``None`` without Redis)
    redis: RedisLink | None = None

    @property
    def degraded(self) -> bool:
        """Whether chatkeep runs without an optional dependency right now (Redis is configured but unavailable):
        it still serves every request, only with its no-Redis behaviour."""
        return (self.redis is not None and self.redis.degraded) or self.chat.hub.broker.degraded


async def get_store(request: Request) -> ChatStore:
    state: ChatkeepState = request.app.state.chatkeep
    return state.store


async def get_chat(request: Request) -> ChatService:
    state: ChatkeepState = request.app.state.chatkeep
    return state.chat


async def get_settings(request: Request) -> Settings:
    state: ChatkeepState = request.app.state.chatkeep
    return state.settings


StoreDep = Annotated[ChatStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ChatDep = Annotated[ChatService, Depends(get_chat)]

#: No NUL (no database stores it) and no U+FFFD (what an id that was not valid UTF-8 decodes to).
_ID_PATTERN = r"^[^\x00\ufffd]+$"
ThreadIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=_ID_PATTERN, description="Thread id.")]
MessageIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=_ID_PATTERN, description="Message id.")]
After = Annotated[
    str | None,
    Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$", description="Cursor from the previous page's X-Next-Cursor."),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
FormatQuery = Annotated[
    str | None, Query(max_length=64, pattern=_ID_PATTERN, description="Only messages in this format.")
]
