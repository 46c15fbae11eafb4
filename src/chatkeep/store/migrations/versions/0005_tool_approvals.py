"""tool approvals: the server's own record of the tool calls it asked the user to approve

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 02:00:00.000000

An approval answer used to be trusted as the stored message said it, and the history API lets a client store any
message: a client could approve a call the model never made, or change a pending call's input before approving
it. ``tool_approvals`` holds each request as the server made it (tool, call id, input), written only by the chat
service; an answer is checked against it and the tool runs with the recorded input. A request stored before this
revision has no record, so it can no longer be approved (it can be denied, or the user asks again).

On PostgreSQL the table gets the same row-level security as the others (migration 0003): a row is the caller's
through its thread, and the system caller sees everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatkeep.store.models import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RULE = (
    "current_setting('chatkeep.system', true) = 'on' OR EXISTS (SELECT 1 FROM threads t "
    "WHERE t.id = tool_approvals.thread_id AND t.user_id = current_setting('chatkeep.user_id', true))"
)


def upgrade() -> None:
    op.create_table(
        "tool_approvals",
        sa.Column("thread_id", sa.String(length=255), nullable=False),
        sa.Column("approval_id", sa.String(length=255), nullable=False),
        sa.Column("tool_call_id", sa.Text(), nullable=False),
        sa.Column("tool_name", sa.Text(), nullable=False),
        sa.Column("input", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_tool_approvals_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("thread_id", "approval_id", name=op.f("pk_tool_approvals")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tool_approvals ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE tool_approvals FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY chatkeep_caller ON tool_approvals USING ({_RULE}) WITH CHECK ({_RULE})")


def downgrade() -> None:
    # dropping the table drops its policy with it
    op.drop_table("tool_approvals")
