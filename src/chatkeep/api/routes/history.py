"""``/api/threads/{id}/messages``: assistant-ui's ``ThreadHistoryAdapter.withFormat`` (load, append, update,
delete). Rows are ``{id, parent_id, format, content, created_at}``; ``content`` comes back exactly as written."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from chatkeep.api.auth import CurrentUser
from chatkeep.api.body import ChatkeepRoute
from chatkeep.api.deps import After, ChatkeepState, FormatQuery, MessageIdPath, SettingsDep, StoreDep, ThreadIdPath
from chatkeep.api.responses import json_response
from chatkeep.api.schemas import ErrorBody, MessageIn, MessageOut, MessagePut, message_out
from chatkeep.errors import InvalidInput, ValidationIssue
from chatkeep.protocol.ids import check_new_id
from chatkeep.protocol.limits import check_message_size
from chatkeep.protocol.messages import is_ai_sdk_format
from chatkeep.settings import Settings
from chatkeep.store import UNSET, ChatStore

__all__ = ["router"]

router = APIRouter(
    prefix="/threads/{thread_id}/messages",
    tags=["history"],
    route_class=ChatkeepRoute,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


@router.get("", response_model=list[MessageOut], summary="Load a thread's message tree, parents first")
async def list_messages(
    thread_id: ThreadIdPath,
    store: StoreDep,
    user: CurrentUser,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    after: After = None,
    format: FormatQuery = None,
) -> Response:
    """Every message of every branch, parents before children, oldest first; the last row of the whole list is
    the newest message. Without ``limit`` the whole thread comes at once (what the adapter expects); with it,
    ``X-Next-Cursor`` gives the next page."""
    page = await store.list_messages(user, thread_id, limit=limit, after=after, format=format)
    headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None
    return json_response([message_out(m) for m in page], headers=headers)


@router.post("", status_code=204, summary="Append (or replace) a message", responses={409: {"model": ErrorBody}})
async def append_message(thread_id: ThreadIdPath, body: MessageIn, request: Request, user: CurrentUser) -> Response:
    """An idempotent upsert on ``id``. ``parent_id`` must be an earlier message of the thread (409 otherwise).

    If the thread does not exist yet for the caller (assistant-ui's first-message race), it is created. The status
    of a reply the server generated is kept (a client writing back its copy does not erase how it ended); the
    first reply appended to an untitled thread has chatkeep title it, in the background.
    """
    # The store and settings straight from the app state, not as StoreDep/SettingsDep: this is the hottest write
    # route (assistant-ui's append), and two dependencies fewer cut a tenth of FastAPI's work per request.
    state: ChatkeepState = request.app.state.chatkeep
    store, settings = state.store, state.settings
    check_new_id(body.id, ("body", "id"))
    check_message_size(body.content, settings, ("body", "content"))
    await store.upsert_message(
        user, thread_id, message_id=body.id, parent_id=body.parent_id, content=body.content, format=body.format,
        create_thread=True,
    )  # fmt: skip
    if body.content.get("role") == "assistant" and is_ai_sdk_format(body.format):
        state.chat.reply_stored(user, thread_id)  # a thread assistant-ui writes itself is titled too
    return Response(status_code=204)


@router.get("/{message_id}", response_model=MessageOut)
async def get_message(
    thread_id: ThreadIdPath, message_id: MessageIdPath, store: StoreDep, user: CurrentUser
) -> Response:
    message = await store.get_message(user, thread_id, message_id)
    return json_response(message_out(message))


async def _put(
    thread_id: str, message_id: str, body: MessagePut, store: ChatStore, settings: Settings, user: str
) -> Response:
    if body.id is not None and body.id != message_id:
        raise InvalidInput([ValidationIssue(("body", "id"), "must equal the message id in the path")])
    check_message_size(body.content, settings, ("body", "content"))
    await store.upsert_message(
        user, thread_id, message_id=message_id,
        parent_id=body.parent_id if "parent_id" in body.model_fields_set else UNSET,
        content=body.content, format=body.format,
    )  # fmt: skip
    return Response(status_code=204)


@router.put(
    "/{message_id}", status_code=204, summary="Update (upsert) a message", responses={409: {"model": ErrorBody}}
)
async def put_message(
    thread_id: ThreadIdPath,
    message_id: MessageIdPath,
    body: MessagePut,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> Response:
    """The adapter's ``update``: replaces the content of the message with this id, or creates it."""
    return await _put(thread_id, message_id, body, store, settings, user)


@router.patch(
    "/{message_id}", status_code=204, summary="Update (upsert) a message", responses={409: {"model": ErrorBody}}
)
async def patch_message(
    thread_id: ThreadIdPath,
    message_id: MessageIdPath,
    body: MessagePut,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> Response:
    """Same as ``PUT`` (assistant-ui's docs use ``PATCH`` for ``update``)."""
    return await _put(thread_id, message_id, body, store, settings, user)


@router.delete("/{message_id}", status_code=204)
async def delete_message(
    thread_id: ThreadIdPath, message_id: MessageIdPath, store: StoreDep, user: CurrentUser
) -> Response:
    """Deletes the message; its children move up to its parent, so no branch below it is lost."""
    await store.delete_message(user, thread_id, message_id)
    return Response(status_code=204)
