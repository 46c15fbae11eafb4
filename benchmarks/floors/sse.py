"""The streaming floor: one Starlette route that answers ``POST /api/chat`` with the frames chatkeep's ``demo``
model produces, on the demo model's schedule (``BENCH_FLOOR_DELAY_MS`` before each text chunk), and nothing else:
no database, no reply kept in memory beyond the generator, no fan-out to other readers.

That is the least any server streaming those frames must do (parse the request, encode each chunk as an SSE
frame, hand it to the socket on time), so CPU per chunk, memory per open stream and the delay added to each
chunk are compared with it. The process imports only Starlette and orjson (not chatkeep), so its memory
baseline is that of a minimal service.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = ["SSE_HEADERS", "create_app", "frame", "words"]

#: The AI SDK's UI message stream headers (what chatkeep sends).
SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}
_COUNT = re.compile(r"count to (\d+)", re.IGNORECASE)


def frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def words(text: str) -> list[str]:
    """The demo model's pieces of a text: ``"a b c"`` → ``["a", " b", " c"]``."""
    parts = text.split(" ")
    return [parts[0], *(f" {w}" for w in parts[1:])] if text else []


def create_app() -> Starlette:
    delay = float(os.environ.get("BENCH_FLOOR_DELAY_MS", "0")) / 1000

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        prompt = body["message"] if "message" in body else body["messages"][-1]
        text = " ".join(p["text"] for p in prompt["parts"] if p["type"] == "text").strip()
        count = _COUNT.search(text)
        if count:
            pieces = [str(i) if i == 1 else f" {i}" for i in range(1, int(count.group(1)) + 1)]
        else:
            pieces = words(f"You said: {text}")
        message_id = "msg-" + secrets.token_hex(8)

        async def frames() -> AsyncIterator[bytes]:
            yield frame({"type": "start", "messageId": message_id})
            yield frame({"type": "start-step"})
            yield frame({"type": "text-start", "id": "txt-0"})
            for piece in pieces:
                if delay:
                    await asyncio.sleep(delay)
                yield frame({"type": "text-delta", "id": "txt-0", "delta": piece})
            yield frame({"type": "text-end", "id": "txt-0"})
            yield frame({"type": "finish-step"})
            yield frame({"type": "finish"})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(frames(), headers=SSE_HEADERS)

    return Starlette(routes=[Route("/healthz", healthz), Route("/api/chat", chat, methods=["POST"])])
