"""``/api/threads``: what assistant-ui's ``RemoteThreadListAdapter`` calls (list, initialize, fetch, rename,
archive, unarchive, delete)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from chatkeep.api.auth import CurrentUser
from chatkeep.api.body import ChatkeepRoute
from chatkeep.api.deps import After, ChatDep, SettingsDep, StoreDep, ThreadIdPath
from chatkeep.api.responses import json_response
from chatkeep.api.schemas import ErrorBody, ThreadCreate, ThreadOut, ThreadPatch, thread_out
from chatkeep.chat.titles import MAX_TITLE_LENGTH
from chatkeep.protocol.limits import check_title
from chatkeep.store import UNSET

__all__ = ["router"]

router = APIRouter(
    prefix="/threads",
    tags=["threads"],
    route_class=ChatkeepRoute,
    responses={401: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


@router.get("", response_model=list[ThreadOut], summary="List the caller's threads, newest first")
async def list_threads(
    store: StoreDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: After = None,
    status_filter: Annotated[Literal["regular", "archived"] | None, Query(alias="status")] = None,
) -> Response:
    """Both regular and archived threads (assistant-ui splits them by ``status``), most recently updated first.

    A JSON array, as the seed's adapter expects. When there are more, the ``X-Next-Cursor`` header (and a
    ``Link: <…>; rel="next"`` header) give the cursor to pass as ``?after=`` for the next page.
    """
    page = await store.list_threads(user, limit=limit, after=after, status=status_filter)
    headers = {}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
        query = f"limit={limit}&after={page.next_cursor}" + (f"&status={status_filter}" if status_filter else "")
        headers["Link"] = f'</api/threads?{query}>; rel="next"'
    return json_response([thread_out(t) for t in page], headers=headers)


@router.post(
    "",
    response_model=ThreadOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a thread (idempotent on localId)",
    responses={200: {"model": ThreadOut, "description": "The thread created earlier with this localId."}},
)
async def create_thread(
    store: StoreDep, settings: SettingsDep, user: CurrentUser, body: Annotated[ThreadCreate | None, Body()] = None
) -> Response:
    """Returns ``{id, …}``; 201 when created, 200 when ``localId`` names a thread created before."""
    data = body or ThreadCreate()
    check_title(data.title, settings, ("body", "title"))
    thread, created = await store.create_thread(user, local_id=data.local_id, title=data.title, custom=data.custom)
    return json_response(thread_out(thread), 201 if created else 200)


@router.get("/{thread_id}", response_model=ThreadOut, responses={404: {"model": ErrorBody}})
async def get_thread(thread_id: ThreadIdPath, store: StoreDep, user: CurrentUser) -> Response:
    return json_response(thread_out(await store.get_thread(user, thread_id)))


@router.patch("/{thread_id}", response_model=ThreadOut, responses={404: {"model": ErrorBody}})
async def update_thread(
    thread_id: ThreadIdPath, body: ThreadPatch, store: StoreDep, settings: SettingsDep, user: CurrentUser
) -> Response:
    """Rename (``title``), archive/unarchive (``status``), set ``custom``, or switch branch (``headId``)."""
    given = body.model_fields_set
    check_title(body.title, settings, ("body", "title"))
    thread = await store.update_thread(
        user,
        thread_id,
        title=body.title if "title" in given else UNSET,
        status=body.status if body.status is not None else UNSET,
        custom=body.custom if "custom" in given else UNSET,
        head_id=body.head_id if body.head_id is not None else UNSET,
    )
    return json_response(thread_out(thread))


@router.delete("/{thread_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_thread(thread_id: ThreadIdPath, store: StoreDep, user: CurrentUser) -> Response:
    """Deletes the thread and every message and part in it."""
    await store.delete_thread(user, thread_id)
    return Response(status_code=204)


class TitleRequest(BaseModel):
    """``POST /api/threads/{id}/title``: all optional. ``messages`` (assistant-ui sends the thread's messages)
    are used only while nothing is stored yet."""

    model_config = ConfigDict(extra="allow", strict=True)

    force: bool = False
    messages: list[dict[str, Any]] | None = Field(default=None, max_length=100)


@router.post("/{thread_id}/title", summary="Generate and store a title", responses={404: {"model": ErrorBody}})
async def generate_title(
    thread_id: ThreadIdPath,
    chat: ChatDep,
    settings: SettingsDep,
    user: CurrentUser,
    body: Annotated[TitleRequest | None, Body()] = None,
) -> Response:
    """A short title from the first messages, with the configured model (the ``demo`` model: the first words of
    the first user message), as plain text on one line. It is stored before the response is sent; a thread that
    already has a title keeps it unless ``{"force": true}``. A title chatkeep is making for the thread by itself
    (``CHATKEEP_AUTO_TITLE``) is waited for and returned, not made twice. Returns ``{title}``."""
    request = body or TitleRequest()
    fallback = [_as_ui_message(m) for m in request.messages or () if m.get("role") in ("user", "assistant")]
    title = await chat.title(
        user,
        thread_id,
        force=request.force,
        fallback_messages=fallback,
        max_length=min(MAX_TITLE_LENGTH, settings.max_title_chars),
    )
    return json_response({"title": title})


def _as_ui_message(message: dict[str, Any]) -> dict[str, Any]:
    """assistant-ui sends its ``ThreadMessage`` s (``content`` instead of ``parts``); both shapes work.

    Only what a title needs is kept, whatever else the client sent: the text parts (the caller keeps only user
    and assistant messages, so no ``system`` message from the client reaches the model)."""
    role = message.get("role")
    parts = message.get("parts", message.get("content"))
    texts = [
        {"type": "text", "text": part["text"]}
        for part in (parts if isinstance(parts, list) else ())
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    ]
    return {"role": role, "parts": texts}
