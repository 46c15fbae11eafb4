"""The schema: ``threads``, ``messages`` and ``parts``, the same on SQLite and PostgreSQL.

Data model:

* A **thread** belongs to one user (``user_id``). Its ``head_id`` is the active leaf of the message tree and
  ``message_seq`` counts the messages ever added, which hands out each message's order key.
* A **message** is keyed by ``(thread_id, id)``; ``id`` is the UIMessage id, which clients choose, so two threads
  may hold the same id. ``parent_id`` makes a tree: edits and regenerations are siblings under one parent.
  ``seq`` is unique per thread and only grows, and a parent always has a smaller ``seq`` than its children, so
  ``ORDER BY seq`` lists parents before children (and the tree can never have a cycle).
* A message in an AI SDK format (``ai-sdk/v5``, ``ai-sdk/v6``) is stored as typed rows: ``role`` and
  ``metadata`` on the message, one ``parts`` row per part with **prefixed columns per part type**
  (``text_*``, ``reasoning_*``, ``file_*``, ``source_url_*``, ``source_document_*``, ``tool_*``, ``data_*``,
  ``custom_*``, ``steering_*``) and CHECK constraints that a part of a type has its required columns. Keys the
  typed columns do not cover go to the ``extra`` JSON column of the part or message, so nothing is lost.
  Any other format is kept verbatim in ``messages.content`` and has no part rows.
* A **tool approval** (``tool_approvals``) is the server's own record of a tool call it asked the user to approve:
  which tool, with which input. Only the chat service writes it; no route of the history API does. It is what an
  approval answer is checked against (see :mod:`chatkeep.store.tool_approvals`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AI_SDK_FORMATS_SQL",
    "MESSAGE_STATUSES",
    "STREAM_STATUSES",
    "Base",
    "JsonValue",
    "MessageRow",
    "PartRow",
    "StreamChunkRow",
    "StreamRow",
    "ThreadRow",
    "ToolApprovalRow",
    "UTCDateTime",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 255
AI_SDK_FORMATS_SQL = "('ai-sdk/v5', 'ai-sdk/v6')"
TOOL_STATES_SQL = (
    "('input-streaming', 'input-available', 'approval-requested', 'approval-responded', "
    "'output-available', 'output-error', 'output-denied')"
)
FIXED_PART_TYPES_SQL = (
    "('text', 'reasoning', 'file', 'source-url', 'source-document', 'step-start', 'dynamic-tool', "
    "'custom', 'reasoning-file', 'steering-message')"
)
IS_TOOL_SQL = "(type LIKE 'tool-_%' OR type = 'dynamic-tool')"
MESSAGE_STATUSES = "('streaming', 'interrupted', 'aborted', 'error')"
STREAM_STATUSES = "('active', 'done', 'aborted', 'interrupted', 'error')"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (``timestamptz`` on PostgreSQL).

    SQLite has no timezone type, so values are stored as naive UTC text in one fixed format (which also
    sorts correctly) and come back aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: ``json`` on both databases. PostgreSQL's ``json`` keeps the text exactly as written, where ``jsonb`` would
#: rewrite numbers (``1.5e300`` comes back as a 301-digit integer) and reorder keys: stored messages must come
#: back as they were sent, and all querying goes through the typed columns. Python ``None`` is SQL NULL (a
#: missing key); a JSON ``null`` that must be kept is written as ``JSON.NULL``.
JsonValue = JSON(none_as_null=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonValue, Any: JsonValue}


class ThreadRow(Base):
    __tablename__ = "threads"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    #: the client's own id for a thread it created (assistant-ui's ``__LOCALID_…``); makes creation idempotent
    local_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    title: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="regular")
    custom: Mapped[Any | None] = mapped_column(JsonValue)
    #: the active leaf of the message tree; the active branch is the path from the root to it
    head_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    #: how many messages were ever added; the next message gets ``message_seq + 1`` as its ``seq``
    message_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("status IN ('regular', 'archived')", name="status"),
        UniqueConstraint("user_id", "local_id"),
        # the thread list: a user's threads, newest first, keyset-paged on (updated_at, id)
        Index(None, "user_id", "updated_at", "id"),
        # export: a user's threads, oldest first, keyset-paged on (created_at, id)
        Index(None, "user_id", "created_at", "id"),
    )


class MessageRow(Base):
    __tablename__ = "messages"

    thread_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("threads.id", ondelete="CASCADE"))
    id: Mapped[str] = mapped_column(String(ID_LENGTH))
    parent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    #: order key: unique per thread, parents before children
    seq: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    metadata_: Mapped[Any | None] = mapped_column("metadata", JsonValue)
    #: the whole content of a message in a format chatkeep does not type (kept verbatim)
    content: Mapped[Any | None] = mapped_column(JsonValue)
    #: keys of an AI SDK message that have no column of their own
    extra: Mapped[Any | None] = mapped_column(JsonValue)
    #: NULL when complete; ``streaming`` while a reply is being generated (a checkpoint), else how it ended early
    status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        PrimaryKeyConstraint("thread_id", "id"),
        CheckConstraint(f"status IS NULL OR status IN {MESSAGE_STATUSES}", name="status"),
        ForeignKeyConstraint(["thread_id", "parent_id"], ["messages.thread_id", "messages.id"], onupdate="CASCADE"),
        UniqueConstraint("thread_id", "seq"),
        Index(None, "created_at"),
        CheckConstraint("role IS NULL OR role IN ('system', 'user', 'assistant')", name="role"),
        CheckConstraint(f"format NOT IN {AI_SDK_FORMATS_SQL} OR (role IS NOT NULL AND content IS NULL)", name="typed"),
        CheckConstraint(f"format IN {AI_SDK_FORMATS_SQL} OR content IS NOT NULL", name="opaque"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
    )


def _requires(kind: str, *columns: str) -> str:
    return f"type <> '{kind}' OR ({' AND '.join(f'{c} IS NOT NULL' for c in columns)})"


def _tool_state_requires(states: str, column: str) -> str:
    return f"tool_state IS NULL OR tool_state NOT IN {states} OR {column} IS NOT NULL"


class PartRow(Base):
    __tablename__ = "parts"

    thread_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    part_order: Mapped[int] = mapped_column(Integer)
    #: the part's ``type`` exactly as sent (``text``, ``tool-get_weather``, ``data-chart``, …)
    type: Mapped[str] = mapped_column(String(ID_LENGTH))

    text_text: Mapped[str | None] = mapped_column(Text)
    text_state: Mapped[str | None] = mapped_column(String(16))

    reasoning_text: Mapped[str | None] = mapped_column(Text)
    reasoning_state: Mapped[str | None] = mapped_column(String(16))
    reasoning_id: Mapped[str | None] = mapped_column(Text)

    #: ``file`` and ``reasoning-file`` parts
    file_media_type: Mapped[str | None] = mapped_column(Text)
    file_url: Mapped[str | None] = mapped_column(Text)
    file_filename: Mapped[str | None] = mapped_column(Text)

    source_url_source_id: Mapped[str | None] = mapped_column(Text)
    source_url_url: Mapped[str | None] = mapped_column(Text)
    source_url_title: Mapped[str | None] = mapped_column(Text)

    source_document_source_id: Mapped[str | None] = mapped_column(Text)
    source_document_media_type: Mapped[str | None] = mapped_column(Text)
    source_document_title: Mapped[str | None] = mapped_column(Text)
    source_document_filename: Mapped[str | None] = mapped_column(Text)

    #: ``tool-<name>`` and ``dynamic-tool`` parts
    tool_name: Mapped[str | None] = mapped_column(Text)
    tool_call_id: Mapped[str | None] = mapped_column(Text)
    tool_state: Mapped[str | None] = mapped_column(String(32))
    tool_input: Mapped[Any | None] = mapped_column(JsonValue)
    tool_output: Mapped[Any | None] = mapped_column(JsonValue)
    tool_error_text: Mapped[str | None] = mapped_column(Text)
    tool_provider_executed: Mapped[bool | None] = mapped_column(Boolean)
    tool_title: Mapped[str | None] = mapped_column(Text)
    tool_raw_input: Mapped[Any | None] = mapped_column(JsonValue)
    tool_preliminary: Mapped[bool | None] = mapped_column(Boolean)
    tool_approval: Mapped[Any | None] = mapped_column(JsonValue)
    tool_call_provider_metadata: Mapped[Any | None] = mapped_column(JsonValue)
    tool_result_provider_metadata: Mapped[Any | None] = mapped_column(JsonValue)
    tool_metadata: Mapped[Any | None] = mapped_column(JsonValue)

    #: ``data-<name>`` parts
    data_name: Mapped[str | None] = mapped_column(Text)
    data_id: Mapped[str | None] = mapped_column(Text)
    data_value: Mapped[Any | None] = mapped_column(JsonValue)

    custom_kind: Mapped[str | None] = mapped_column(Text)

    steering_id: Mapped[str | None] = mapped_column(Text)
    steering_parts: Mapped[Any | None] = mapped_column(JsonValue)

    #: ``providerMetadata`` of text, reasoning, file, source, custom and reasoning-file parts
    provider_metadata: Mapped[Any | None] = mapped_column(JsonValue)
    #: keys the typed columns do not cover (fields newer SDKs add, a ``null`` where a key may be absent)
    extra: Mapped[Any | None] = mapped_column(JsonValue)

    __table_args__ = (
        PrimaryKeyConstraint("thread_id", "message_id", "part_order"),
        ForeignKeyConstraint(
            ["thread_id", "message_id"], ["messages.thread_id", "messages.id"], ondelete="CASCADE", onupdate="CASCADE"
        ),
        CheckConstraint("part_order >= 0", name="part_order"),
        CheckConstraint(
            f"type IN {FIXED_PART_TYPES_SQL} OR type LIKE 'tool-_%' OR type LIKE 'data-_%'", name="known_type"
        ),
        CheckConstraint(_requires("text", "text_text"), name="text"),
        CheckConstraint("text_state IS NULL OR text_state IN ('streaming', 'done')", name="text_state"),
        CheckConstraint(_requires("reasoning", "reasoning_text"), name="reasoning"),
        CheckConstraint("reasoning_state IS NULL OR reasoning_state IN ('streaming', 'done')", name="reasoning_state"),
        CheckConstraint(_requires("file", "file_media_type", "file_url"), name="file"),
        CheckConstraint(_requires("reasoning-file", "file_media_type", "file_url"), name="reasoning_file"),
        CheckConstraint(_requires("source-url", "source_url_source_id", "source_url_url"), name="source_url"),
        CheckConstraint(
            _requires(
                "source-document", "source_document_source_id", "source_document_media_type", "source_document_title"
            ),
            name="source_document",
        ),
        CheckConstraint(
            f"NOT {IS_TOOL_SQL} OR (tool_name IS NOT NULL AND tool_call_id IS NOT NULL "
            f"AND tool_state IN {TOOL_STATES_SQL})",
            name="tool",
        ),
        CheckConstraint(
            _tool_state_requires(
                "('input-available', 'approval-requested', 'approval-responded', 'output-available', 'output-denied')",
                "tool_input",
            ),
            name="tool_input",
        ),
        CheckConstraint(_tool_state_requires("('output-available')", "tool_output"), name="tool_output"),
        CheckConstraint(_tool_state_requires("('output-error')", "tool_error_text"), name="tool_error"),
        CheckConstraint(
            _tool_state_requires("('approval-requested', 'approval-responded', 'output-denied')", "tool_approval"),
            name="tool_approval",
        ),
        CheckConstraint("type NOT LIKE 'data-_%' OR (data_name IS NOT NULL AND data_value IS NOT NULL)", name="data"),
        CheckConstraint(_requires("custom", "custom_kind"), name="custom"),
        CheckConstraint(_requires("steering-message", "steering_id", "steering_parts"), name="steering"),
    )


class StreamRow(Base):
    """A reply being generated (or recently generated) in a thread: what resuming clients follow.

    ``owner`` names the process producing it (``host:pid:token``); ``updated_at`` is its heartbeat. A stream
    whose owner died stays ``active`` until a process notices (at start-up, or when the heartbeat is stale) and
    marks it ``interrupted``. ``chunk_count`` chunks are in ``stream_chunks`` (sequence numbers 0 … n-1).
    """

    __tablename__ = "streams"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("threads.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    #: the parent of the reply: where a reply rebuilt from the chunks after a crash goes in the tree
    parent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(ID_LENGTH))
    stop_requested: Mapped[bool] = mapped_column(Boolean, server_default="0")
    chunk_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(f"status IN {STREAM_STATUSES}", name="status"),
        Index(None, "thread_id", "status"),
        Index(None, "status", "updated_at"),
    )


class StreamChunkRow(Base):
    """One UI message stream chunk (its JSON text) of a stream, by sequence number from 0."""

    __tablename__ = "stream_chunks"

    stream_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("streams.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    chunk: Mapped[str] = mapped_column(Text)

    __table_args__ = (PrimaryKeyConstraint("stream_id", "seq"),)


class ToolApprovalRow(Base):
    """A tool call the server asked the user to approve, as the model made it (its name and input).

    ``approved`` is NULL while the request waits, then the answer; it changes once (see
    :class:`chatkeep.store.tool_approvals.ToolApprovals`). ``approval_id`` is made by the server, never by a
    client.
    """

    __tablename__ = "tool_approvals"

    thread_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("threads.id", ondelete="CASCADE"))
    approval_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    tool_call_id: Mapped[str] = mapped_column(Text)
    tool_name: Mapped[str] = mapped_column(Text)
    #: the input exactly as the model gave it (the tool runs with this, whatever a stored message says)
    input: Mapped[Any | None] = mapped_column(JsonValue)
    approved: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]

    __table_args__ = (PrimaryKeyConstraint("thread_id", "approval_id"),)
