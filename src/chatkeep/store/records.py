"""What the store hands out: plain immutable records, free of SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

__all__ = ["MessageTree", "Page", "StoredMessage", "Thread", "ThreadStatus"]

ThreadStatus = Literal["regular", "archived"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Thread:
    id: str
    user_id: str
    title: str | None
    status: ThreadStatus
    custom: Any
    #: the active leaf message (``None`` for an empty thread)
    head_id: str | None
    local_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as stored. ``content`` is the UIMessage without ``id`` for AI SDK formats, else verbatim."""

    id: str
    thread_id: str
    parent_id: str | None
    format: str
    content: dict[str, Any]
    seq: int
    created_at: datetime
    updated_at: datetime
    #: ``None`` when complete; ``streaming`` while its reply is generated; ``interrupted``, ``aborted`` or
    #: ``error`` when it ended early (its content is what was produced until then)
    status: str | None = None

    def ui_message(self) -> dict[str, Any]:
        """The UIMessage ``{id, ...content}`` (meaningful for AI SDK formats)."""
        return {"id": self.id, **self.content}


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` fetches the next one and is ``None`` on the last page."""

    items: Sequence[T]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class MessageTree:
    """All messages of a thread (parents before children) and its active leaf."""

    messages: Sequence[StoredMessage]
    head_id: str | None
    _by_id: dict[str, StoredMessage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {m.id: m for m in self.messages})

    def children(self, message_id: str | None) -> list[StoredMessage]:
        """The direct children of a message (of the roots for ``None``), oldest first: its siblings' branches."""
        return [m for m in self.messages if m.parent_id == message_id]

    def branch(self, leaf_id: str | None = None) -> list[StoredMessage]:
        """The path from the root to ``leaf_id`` (default: the active leaf, else the newest message)."""
        leaf = leaf_id if leaf_id is not None else self.head_id
        if leaf is None or leaf not in self._by_id:
            if not self.messages:
                return []
            leaf = self.messages[-1].id
        path: list[StoredMessage] = []
        current: str | None = leaf
        while current is not None:
            message = self._by_id[current]
            path.append(message)
            current = message.parent_id
        path.reverse()
        return path
