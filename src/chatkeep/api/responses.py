"""JSON responses encoded once, with orjson (fast) and the standard library as a fallback; UI message streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from chatkeep.protocol.stream import UI_MESSAGE_STREAM_HEADERS

__all__ = ["EventStreamResponse", "dumps", "json_response"]


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # orjson refuses integers beyond 64 bits; JSON has no such limit and stored messages may hold them.
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def json_response(data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code, headers=headers, media_type="application/json")


class EventStreamResponse(StreamingResponse):
    """A UI message stream (``text/event-stream``, the AI SDK's headers): the bytes of ``stream`` as they come,
    until it ends or the client goes away.

    Starlette's :class:`StreamingResponse` runs every response in an anyio task group of two tasks, one writing
    the body and one waiting for the client to disconnect: at 1,000 open streams, about a tenth of the server's
    memory and many of its task switches. This one writes in a plain task of its own and waits for the disconnect
    in another, which stops the writer if the client goes away first; the response then ends normally, as
    Starlette's does. The writer is a task of its own, not the request's, because a task resumes through every
    coroutine it awaits in: the request's runs through the whole middleware stack (a dozen frames), and a stream
    resumes once per chunk. Servers speaking ASGI 2.4, where writing to a gone client raises instead, get
    Starlette's own path.
    """

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        super().__init__(stream, headers=dict(UI_MESSAGE_STREAM_HEADERS))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = tuple(map(int, scope.get("asgi", {}).get("spec_version", "2.0").split(".")))
        if scope["type"] != "http" or spec >= (2, 4):
            await super().__call__(scope, receive, send)
            return
        writer = asyncio.create_task(self.stream_response(send))

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            writer.cancel()  # the client went away (a no-op once the body is written)

        listener = asyncio.create_task(listen())
        try:
            await asyncio.shield(writer)
        except asyncio.CancelledError:
            if not writer.cancelled():  # this request was cancelled, not the writer by a disconnect
                writer.cancel()
                raise
        finally:
            listener.cancel()
        if self.background is not None:
            await self.background()
