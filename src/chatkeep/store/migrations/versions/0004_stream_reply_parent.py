"""the parent of a stream's reply

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:05:00.000000

A reply is no longer checkpointed into ``messages``/``parts`` while it streams: its chunks in ``stream_chunks``
are the checkpoint, and a reply whose producer died is rebuilt from them. ``streams.parent_id`` says where in the
tree it goes. A nullable column, added in place on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("streams", sa.Column("parent_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("streams") as batch_op:
        batch_op.drop_column("parent_id")
