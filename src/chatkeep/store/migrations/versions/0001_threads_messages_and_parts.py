"""threads, messages and parts: the first schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:27:57.598557
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatkeep.store.models import UTCDateTime

# Frozen copies of the column types as they were at this revision.
JSON = sa.JSON(none_as_null=True)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("local_id", sa.String(length=255), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="regular", nullable=False),
        sa.Column("custom", JSON, nullable=True),
        sa.Column("head_id", sa.String(length=255), nullable=True),
        sa.Column("message_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('regular', 'archived')", name=op.f("ck_threads_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threads")),
        sa.UniqueConstraint("user_id", "local_id", name=op.f("uq_threads_user_id_local_id")),
    )
    op.create_index(op.f("ix_threads_user_id_updated_at_id"), "threads", ["user_id", "updated_at", "id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("thread_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("parent_id", sa.String(length=255), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("content", JSON, nullable=True),
        sa.Column("extra", JSON, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "format IN ('ai-sdk/v5', 'ai-sdk/v6') OR content IS NOT NULL", name=op.f("ck_messages_opaque")
        ),
        sa.CheckConstraint(
            "format NOT IN ('ai-sdk/v5', 'ai-sdk/v6') OR (role IS NOT NULL AND content IS NULL)",
            name=op.f("ck_messages_typed"),
        ),
        sa.CheckConstraint("role IS NULL OR role IN ('system', 'user', 'assistant')", name=op.f("ck_messages_role")),
        sa.CheckConstraint("parent_id IS NULL OR parent_id <> id", name=op.f("ck_messages_not_own_parent")),
        sa.ForeignKeyConstraint(
            ["thread_id", "parent_id"],
            ["messages.thread_id", "messages.id"],
            name=op.f("fk_messages_thread_id_parent_id_messages"),
            onupdate="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_messages_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("thread_id", "id", name=op.f("pk_messages")),
        sa.UniqueConstraint("thread_id", "seq", name=op.f("uq_messages_thread_id_seq")),
    )
    op.create_index(op.f("ix_messages_created_at"), "messages", ["created_at"], unique=False)

    op.create_table(
        "parts",
        sa.Column("thread_id", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("part_order", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("text_text", sa.Text(), nullable=True),
        sa.Column("text_state", sa.String(length=16), nullable=True),
        sa.Column("reasoning_text", sa.Text(), nullable=True),
        sa.Column("reasoning_state", sa.String(length=16), nullable=True),
        sa.Column("reasoning_id", sa.Text(), nullable=True),
        sa.Column("file_media_type", sa.Text(), nullable=True),
        sa.Column("file_url", sa.Text(), nullable=True),
        sa.Column("file_filename", sa.Text(), nullable=True),
        sa.Column("source_url_source_id", sa.Text(), nullable=True),
        sa.Column("source_url_url", sa.Text(), nullable=True),
        sa.Column("source_url_title", sa.Text(), nullable=True),
        sa.Column("source_document_source_id", sa.Text(), nullable=True),
        sa.Column("source_document_media_type", sa.Text(), nullable=True),
        sa.Column("source_document_title", sa.Text(), nullable=True),
        sa.Column("source_document_filename", sa.Text(), nullable=True),
        sa.Column("tool_name", sa.Text(), nullable=True),
        sa.Column("tool_call_id", sa.Text(), nullable=True),
        sa.Column("tool_state", sa.String(length=32), nullable=True),
        sa.Column("tool_input", JSON, nullable=True),
        sa.Column("tool_output", JSON, nullable=True),
        sa.Column("tool_error_text", sa.Text(), nullable=True),
        sa.Column("tool_provider_executed", sa.Boolean(), nullable=True),
        sa.Column("tool_title", sa.Text(), nullable=True),
        sa.Column("tool_raw_input", JSON, nullable=True),
        sa.Column("tool_preliminary", sa.Boolean(), nullable=True),
        sa.Column("tool_approval", JSON, nullable=True),
        sa.Column("tool_call_provider_metadata", JSON, nullable=True),
        sa.Column("tool_result_provider_metadata", JSON, nullable=True),
        sa.Column("tool_metadata", JSON, nullable=True),
        sa.Column("data_name", sa.Text(), nullable=True),
        sa.Column("data_id", sa.Text(), nullable=True),
        sa.Column("data_value", JSON, nullable=True),
        sa.Column("custom_kind", sa.Text(), nullable=True),
        sa.Column("steering_id", sa.Text(), nullable=True),
        sa.Column("steering_parts", JSON, nullable=True),
        sa.Column("provider_metadata", JSON, nullable=True),
        sa.Column("extra", JSON, nullable=True),
        sa.CheckConstraint(
            "NOT (type LIKE 'tool-_%' OR type = 'dynamic-tool') OR (tool_name IS NOT NULL AND tool_call_id IS NOT NULL AND tool_state IN ('input-streaming', 'input-available', 'approval-requested', 'approval-responded', 'output-available', 'output-error', 'output-denied'))",
            name=op.f("ck_parts_tool"),
        ),
        sa.CheckConstraint(
            "reasoning_state IS NULL OR reasoning_state IN ('streaming', 'done')", name=op.f("ck_parts_reasoning_state")
        ),
        sa.CheckConstraint(
            "text_state IS NULL OR text_state IN ('streaming', 'done')", name=op.f("ck_parts_text_state")
        ),
        sa.CheckConstraint(
            "tool_state IS NULL OR tool_state NOT IN ('approval-requested', 'approval-responded', 'output-denied') OR tool_approval IS NOT NULL",
            name=op.f("ck_parts_tool_approval"),
        ),
        sa.CheckConstraint(
            "tool_state IS NULL OR tool_state NOT IN ('input-available', 'approval-requested', 'approval-responded', 'output-available', 'output-denied') OR tool_input IS NOT NULL",
            name=op.f("ck_parts_tool_input"),
        ),
        sa.CheckConstraint(
            "tool_state IS NULL OR tool_state NOT IN ('output-available') OR tool_output IS NOT NULL",
            name=op.f("ck_parts_tool_output"),
        ),
        sa.CheckConstraint(
            "tool_state IS NULL OR tool_state NOT IN ('output-error') OR tool_error_text IS NOT NULL",
            name=op.f("ck_parts_tool_error"),
        ),
        sa.CheckConstraint("type <> 'custom' OR (custom_kind IS NOT NULL)", name=op.f("ck_parts_custom")),
        sa.CheckConstraint(
            "type <> 'file' OR (file_media_type IS NOT NULL AND file_url IS NOT NULL)", name=op.f("ck_parts_file")
        ),
        sa.CheckConstraint("type <> 'reasoning' OR (reasoning_text IS NOT NULL)", name=op.f("ck_parts_reasoning")),
        sa.CheckConstraint(
            "type <> 'reasoning-file' OR (file_media_type IS NOT NULL AND file_url IS NOT NULL)",
            name=op.f("ck_parts_reasoning_file"),
        ),
        sa.CheckConstraint(
            "type <> 'source-document' OR (source_document_source_id IS NOT NULL AND source_document_media_type IS NOT NULL AND source_document_title IS NOT NULL)",
            name=op.f("ck_parts_source_document"),
        ),
        sa.CheckConstraint(
            "type <> 'source-url' OR (source_url_source_id IS NOT NULL AND source_url_url IS NOT NULL)",
            name=op.f("ck_parts_source_url"),
        ),
        sa.CheckConstraint(
            "type <> 'steering-message' OR (steering_id IS NOT NULL AND steering_parts IS NOT NULL)",
            name=op.f("ck_parts_steering"),
        ),
        sa.CheckConstraint("type <> 'text' OR (text_text IS NOT NULL)", name=op.f("ck_parts_text")),
        sa.CheckConstraint(
            "type IN ('text', 'reasoning', 'file', 'source-url', 'source-document', 'step-start', 'dynamic-tool', 'custom', 'reasoning-file', 'steering-message') OR type LIKE 'tool-_%' OR type LIKE 'data-_%'",
            name=op.f("ck_parts_known_type"),
        ),
        sa.CheckConstraint(
            "type NOT LIKE 'data-_%' OR (data_name IS NOT NULL AND data_value IS NOT NULL)", name=op.f("ck_parts_data")
        ),
        sa.CheckConstraint("part_order >= 0", name=op.f("ck_parts_part_order")),
        sa.ForeignKeyConstraint(
            ["thread_id", "message_id"],
            ["messages.thread_id", "messages.id"],
            name=op.f("fk_parts_thread_id_message_id_messages"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("thread_id", "message_id", "part_order", name=op.f("pk_parts")),
    )


def downgrade() -> None:
    op.drop_table("parts")
    op.drop_index(op.f("ix_messages_created_at"), table_name="messages")

    op.drop_table("messages")
    op.drop_index(op.f("ix_threads_user_id_updated_at_id"), table_name="threads")

    op.drop_table("threads")
