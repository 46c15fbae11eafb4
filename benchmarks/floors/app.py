"""The database floor: chatkeep's thread, history and chat routes as plain Starlette handlers over the raw driver.

What each route does, and why that is the floor:

* ``GET /api/chat/{id}/messages`` and ``GET /api/threads/{id}/messages``: two queries (the messages, joined to
  their thread for the owner check, then the parts), one pass to build the JSON, one ``orjson.dumps``. Loading a
  stored chat cannot do less: the rows have to be read and turned into the wire format.
* ``POST /api/threads/{id}/messages``: parse the body, one transaction that takes the next ``seq`` (locking the
  thread row, which also moves its head), inserts the message and its part rows. The same rows chatkeep writes;
  no validation (the database's constraints still apply).
* ``GET /api/threads``: one keyset query on ``(updated_at, id)`` (chatkeep's index), the JSON, a cursor header.
* ``POST /api/chat``: a minimal chat turn with the same persistence: read the branch (the model's input), store
  the prompt, stream the demo model's reply (same frames), store the reply, then ``[DONE]``.

Configured by ``BENCH_FLOOR_DATABASE_URL`` (``postgresql://…`` or ``sqlite:///…``) and ``BENCH_FLOOR_USER``.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from benchmarks.floors.pg import PgStore
from benchmarks.floors.shape import content_of, part_insert_row
from benchmarks.floors.sqlite import SqliteStore
from benchmarks.floors.sse import SSE_HEADERS, frame, words

__all__ = ["create_app"]

_AI_SDK = ("ai-sdk/v5", "ai-sdk/v6")


def _json(data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), headers=headers, media_type="application/json")


def _not_found() -> Response:
    return Response(b'{"error":{"code":"not_found"}}', 404, media_type="application/json")


def _group(parts: Sequence[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for row in parts:
        grouped.setdefault(row[0], []).append(row)
    return grouped


def _branch(store: PgStore | SqliteStore, head: str | None, rows: Sequence[Any], parts: Sequence[Any]) -> list[Any]:
    """The UIMessages from the root to the head (the active branch)."""
    grouped = _group(parts)
    by_id = {row[0]: row for row in rows}
    current = head if head in by_id else (rows[-1][0] if rows else None)
    path = []
    while current is not None and current in by_id:
        row = by_id[current]
        path.append(row)
        current = row[1]
    path.reverse()
    return [
        {"id": row[0], **content_of(row, grouped.get(row[0], ()), store.loads)} for row in path if row[2] in _AI_SDK
    ]


def create_app() -> Starlette:
    url = os.environ["BENCH_FLOOR_DATABASE_URL"]
    user = os.environ["BENCH_FLOOR_USER"]
    store: PgStore | SqliteStore

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal store
        store = await (SqliteStore.open(url) if url.startswith("sqlite") else PgStore.open(url))
        try:
            yield
        finally:
            await store.close()

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def active_branch(request: Request) -> Response:
        found = await store.messages(user, request.path_params["thread_id"])
        if found is None:
            return _not_found()
        head, rows, parts = found
        return _json(_branch(store, head, rows, parts))

    async def history(request: Request) -> Response:
        found = await store.messages(user, request.path_params["thread_id"])
        if found is None:
            return _not_found()
        _head, rows, parts = found
        grouped = _group(parts)
        loads, stamp = store.loads, store.stamp
        return _json(
            [
                {
                    "id": row[0],
                    "parent_id": row[1],
                    "format": row[2],
                    "content": content_of(row, grouped.get(row[0], ()), loads),
                    "created_at": stamp(row[7]),
                    "status": row[6] or "complete",
                }
                for row in rows
            ]
        )

    async def append(request: Request) -> Response:
        body = orjson.loads(await request.body())
        thread_id = request.path_params["thread_id"]
        content, message_id = body["content"], body["id"]
        parts = [part_insert_row(thread_id, message_id, i, p, store.dumps) for i, p in enumerate(content["parts"])]
        stored = await store.append(user, thread_id, message_id, body.get("parent_id"), body["format"], content, parts)
        return Response(status_code=204 if stored else 404)

    async def threads(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "100"))
        after = request.query_params.get("after")
        cursor = orjson.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))) if after else None
        rows = await store.threads(user, limit + 1, tuple(cursor) if cursor else None)
        loads, stamp = store.loads, store.stamp
        page = [
            {
                "id": row[0],
                "title": row[1],
                "status": row[2],
                "custom": None if row[3] is None else loads(row[3]),
                "createdAt": stamp(row[5]),
                "updatedAt": stamp(row[6]),
                "headId": row[4],
            }
            for row in rows[:limit]
        ]
        headers = {}
        if len(rows) > limit:
            last = rows[limit - 1]
            token = orjson.dumps([store.cursor_stamp(last[6]), last[0]])
            headers["X-Next-Cursor"] = base64.urlsafe_b64encode(token).decode().rstrip("=")
        return _json(page, headers)

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        thread_id = body["id"]
        prompt = body["message"] if "message" in body else body["messages"][-1]
        found = await store.messages(user, thread_id)
        if found is None:
            return _not_found()
        history = _branch(store, *found)  # what a model would be given
        parent = history[-1]["id"] if history else None
        prompt_parts = [
            part_insert_row(thread_id, prompt["id"], i, p, store.dumps) for i, p in enumerate(prompt["parts"])
        ]
        prompt_content = {"role": "user", "parts": prompt["parts"]}
        await store.append(user, thread_id, prompt["id"], parent, "ai-sdk/v6", prompt_content, prompt_parts)
        text = " ".join(p["text"] for p in prompt["parts"] if p["type"] == "text").strip()
        reply_id = "msg-" + secrets.token_hex(8)

        async def frames() -> AsyncIterator[bytes]:
            yield frame({"type": "start", "messageId": reply_id})
            yield frame({"type": "start-step"})
            yield frame({"type": "text-start", "id": "txt-0"})
            for piece in words(f"You said: {text}"):
                yield frame({"type": "text-delta", "id": "txt-0", "delta": piece})
            yield frame({"type": "text-end", "id": "txt-0"})
            yield frame({"type": "finish-step"})
            yield frame({"type": "finish"})
            reply_parts = [{"type": "step-start"}, {"type": "text", "text": f"You said: {text}", "state": "done"}]
            rows = [part_insert_row(thread_id, reply_id, i, p, store.dumps) for i, p in enumerate(reply_parts)]
            reply = {"role": "assistant", "parts": reply_parts}
            await store.append(user, thread_id, reply_id, prompt["id"], "ai-sdk/v6", reply, rows)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(frames(), headers=SSE_HEADERS)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/chat/{thread_id}/messages", active_branch),
            Route("/api/threads", threads),
            Route("/api/threads/{thread_id}/messages", history),
            Route("/api/threads/{thread_id}/messages", append, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
