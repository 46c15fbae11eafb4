"""streams, stream chunks and message status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:59:01.035979
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatkeep.store.models import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE_STATUSES = "('streaming', 'interrupted', 'aborted', 'error')"


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("thread_id", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("chunk_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'done', 'aborted', 'interrupted', 'error')", name=op.f("ck_streams_status")
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_streams_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streams")),
    )
    op.create_index(op.f("ix_streams_status_updated_at"), "streams", ["status", "updated_at"], unique=False)
    op.create_index(op.f("ix_streams_thread_id_status"), "streams", ["thread_id", "status"], unique=False)
    op.create_table(
        "stream_chunks",
        sa.Column("stream_id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("chunk", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"], ["streams.id"], name=op.f("fk_stream_chunks_stream_id_streams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("stream_id", "seq", name=op.f("pk_stream_chunks")),
    )
    # A nullable column is added in place on both databases (no table rebuild on SQLite). SQLite cannot add a
    # named table constraint afterwards, so there the CHECK is part of the column.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE messages ADD COLUMN status VARCHAR(16) "
            f"CONSTRAINT ck_messages_status CHECK (status IS NULL OR status IN {MESSAGE_STATUSES})"
        )
    else:
        op.add_column("messages", sa.Column("status", sa.String(length=16), nullable=True))
        op.create_check_constraint(
            op.f("ck_messages_status"), "messages", f"status IS NULL OR status IN {MESSAGE_STATUSES}"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE messages DROP COLUMN status")
    else:
        op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
        op.drop_column("messages", "status")
    op.drop_table("stream_chunks")
    op.drop_index(op.f("ix_streams_thread_id_status"), table_name="streams")
    op.drop_index(op.f("ix_streams_status_updated_at"), table_name="streams")
    op.drop_table("streams")
