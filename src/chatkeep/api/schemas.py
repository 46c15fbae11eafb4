"""Request and response bodies of the HTTP API (JSON, camelCase where the seed's clients expect it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from chatkeep.protocol.messages import NoNull
from chatkeep.protocol.timestamps import iso
from chatkeep.store import StoredMessage, Thread

__all__ = [
    "ErrorBody",
    "MessageIn",
    "MessageOut",
    "MessagePut",
    "ThreadCreate",
    "ThreadOut",
    "ThreadPatch",
    "iso",
    "message_out",
    "thread_out",
]

Id = Annotated[str, Field(min_length=1, max_length=255)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ThreadCreate(_In):
    """``POST /api/threads``: every field is optional and an empty body is fine."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    local_id: Id | None = Field(
        default=None,
        alias="localId",
        description="The client's own id for the thread (assistant-ui's __LOCALID_…): posting it again returns "
        "the thread created the first time.",
    )
    title: str | None = None
    custom: dict[str, JsonValue] | None = None


class ThreadPatch(_In):
    """``PATCH /api/threads/{id}``: only the keys present change; ``title: null`` clears the title."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    title: str | None = None
    status: Annotated[Literal["regular", "archived"] | None, NoNull] = None
    custom: dict[str, JsonValue] | None = None
    head_id: Annotated[Id | None, NoNull] = Field(
        default=None, alias="headId", description="Make this message the active leaf (switch branch)."
    )


class MessageIn(_In):
    """``POST /api/threads/{id}/messages``: one row of assistant-ui's ``withFormat`` history."""

    id: Id
    parent_id: Id | None = None
    format: Annotated[str, Field(min_length=1, max_length=64)]
    content: dict[str, Any] = Field(
        description="For ai-sdk/v5 and ai-sdk/v6: the UIMessage without its id (validated). Otherwise any JSON "
        "object, stored verbatim."
    )


class MessagePut(_In):
    """``PUT``/``PATCH /api/threads/{id}/messages/{message_id}``: the adapter's ``update`` (an upsert)."""

    id: Id | None = Field(default=None, description="If given, must equal the id in the path.")
    parent_id: Id | None = Field(default=None, description="Omit to keep the stored parent.")
    format: Annotated[str, Field(min_length=1, max_length=64)]
    content: dict[str, Any]


class ThreadOut(BaseModel):
    id: str
    title: str | None
    status: Literal["regular", "archived"]
    custom: Any
    createdAt: str
    updatedAt: str
    headId: str | None


class MessageOut(BaseModel):
    id: str
    parent_id: str | None
    format: str
    content: dict[str, Any]
    created_at: str
    status: Literal["complete", "interrupted", "aborted", "error"] = Field(
        description="'complete', or how a reply ended early: 'interrupted' (the server stopped), 'aborted' (a user "
        "stopped it) or 'error' (the model failed); its content is what was produced until then."
    )


class _ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: _ErrorDetail


def thread_out(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "title": thread.title,
        "status": thread.status,
        "custom": thread.custom,
        "createdAt": iso(thread.created_at),
        "updatedAt": iso(thread.updated_at),
        "headId": thread.head_id,
    }


def message_out(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "parent_id": message.parent_id,
        "format": message.format,
        "content": message.content,
        "created_at": iso(message.created_at),
        "status": message.status or "complete",
    }
