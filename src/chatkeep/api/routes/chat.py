"""``/api/chat``: the Vercel AI SDK side (``useChat`` + ``DefaultChatTransport``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chatkeep.api.auth import CurrentUser
from chatkeep.api.body import ChatkeepRoute
from chatkeep.api.deps import ChatDep, SettingsDep, StoreDep, ThreadIdPath
from chatkeep.api.responses import EventStreamResponse, json_response
from chatkeep.api.schemas import ErrorBody, Id
from chatkeep.errors import InvalidInput, PayloadTooLarge, ValidationIssue
from chatkeep.protocol.ids import check_new_id
from chatkeep.protocol.limits import check_message_size
from chatkeep.protocol.messages import parse_ui_message

__all__ = ["ChatRequest", "router"]

router = APIRouter(
    prefix="/chat",
    tags=["chat"],
    route_class=ChatkeepRoute,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


class ChatRequest(BaseModel):
    """What ``DefaultChatTransport`` posts: ``{id, messages, trigger, messageId?}`` (the whole branch), or
    ``{id, message}`` (only the last message; the history comes from the database). Other keys that transports
    add (assistant-ui's ``tools``, ``system``, ``config``, ``metadata``…) are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: Id = Field(description="The thread id; an id the caller has never used creates the thread.")
    messages: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=10_000)
    message: dict[str, Any] | None = None
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    messageId: str | None = Field(default=None, max_length=255)


@router.post(
    "",
    summary="Send a message and stream the reply (AI SDK UI message stream)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The UI message stream (SSE)."},
        409: {"model": ErrorBody, "description": "The messages contradict what is stored."},
    },
)
async def chat(body: ChatRequest, service: ChatDep, settings: SettingsDep, user: CurrentUser) -> StreamingResponse:
    """Stores the user message, then streams the assistant's reply as it is generated and stores it too.

    The first chunk, ``start``, carries the reply's server-generated ``messageId``. Regenerations and edits
    become siblings in the thread's message tree; nothing is deleted.
    """
    if (body.messages is None) == (body.message is None):
        raise InvalidInput([ValidationIssue(("body",), "send either 'messages' or 'message'", "missing")])
    if body.messages is not None and len(body.messages) > settings.max_messages_per_request:
        raise PayloadTooLarge(["body", "messages"], f"more than {settings.max_messages_per_request} messages")
    sent: list[tuple[tuple[str | int, ...], dict[str, Any]]] = [
        (("body", "messages", index), item) for index, item in enumerate(body.messages or ())
    ]
    if body.message is not None:
        sent.append((("body", "message"), body.message))
    check_new_id(body.id, ("body", "id"))
    seen: set[str] = set()
    # Only the cheap checks here: each message is validated as a UIMessage by the service, unless it is exactly
    # what the thread has stored (useChat resends the whole branch every turn; validating 200 stored messages
    # again cost more than the rest of the turn).
    for loc, item in sent:
        check_message_size(item, settings, loc)
        if not isinstance(item.get("id"), str):
            parse_ui_message(item, loc=loc)  # refuses it, with every other problem the message has
            raise InvalidInput([ValidationIssue((*loc, "id"), "Input should be a valid string", "string_type")])
        check_new_id(item["id"], (*loc, "id"))
        if item["id"] in seen:
            issue = ValidationIssue((*loc, "id"), "another message of the request has this id", "duplicate_id")
            raise InvalidInput([issue])
        seen.add(item["id"])
    turn = await service.start(user, body.id, messages=body.messages, message=body.message, trigger=body.trigger)
    return EventStreamResponse(turn.sse())


@router.get("/{thread_id}/messages", summary="The active branch as UIMessages, for useChat({messages})")
async def active_branch(thread_id: ThreadIdPath, store: StoreDep, user: CurrentUser) -> Response:
    """The UIMessages on the path from the first message to the thread's active leaf (the last message written,
    or the one chosen with ``PATCH /api/threads/{id}`` ``{headId}``). Messages in non-AI-SDK formats are left
    out."""
    return json_response(await store.active_branch(user, thread_id))


@router.get(
    "/{thread_id}/stream",
    summary="Resume the reply streaming in a thread (useChat({resume: true}))",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The stream, replayed from its start."},
        204: {"description": "Nothing is streaming in this thread."},
    },
)
async def resume(thread_id: ThreadIdPath, service: ChatDep, user: CurrentUser) -> Response:
    """The reply being generated in the thread, replayed from its ``start`` chunk (same ``messageId``) and then
    followed live until it ends; 204 when nothing is streaming (also for a thread that does not exist yet, which
    is what a new chat asks on mount). Works from any chatkeep process sharing the database."""
    stream = await service.follow(user, thread_id)
    if stream is None:
        return Response(status_code=204)
    return EventStreamResponse(stream)


@router.post("/{thread_id}/stop", status_code=204, summary="Stop the reply being generated")
async def stop(thread_id: ThreadIdPath, service: ChatDep, user: CurrentUser) -> Response:
    """Stops the generation on the server (the model call and any running tools), stores the partial reply marked
    ``aborted``, and ends every reader of the stream cleanly. Returns once that is done; a harmless 204 when
    nothing is streaming. With resumable streams, the client's own ``stop()`` only disconnects: wire the stop
    button to this endpoint too."""
    await service.stop(user, thread_id)
    return Response(status_code=204)
