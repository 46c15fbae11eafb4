"""export index and row-level security

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 06:40:58.775530

On PostgreSQL every table gets row-level security keyed on the caller that each transaction sets (see
``chatkeep.store._db``): a thread is visible to the user whose id is in ``chatkeep.user_id``, a message, part or
stream through its thread, a stream chunk through its stream; ``chatkeep.system = 'on'`` (the service's own
bookkeeping, and migrations) sees everything; a transaction that sets neither sees nothing. ``FORCE`` makes the
policies bind the tables' owner too (the role chatkeep usually connects as). Superusers and roles with
``BYPASSRLS`` are never bound: chatkeep warns on start when it connects as one.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SYSTEM = "current_setting('chatkeep.system', true) = 'on'"
_USER = "current_setting('chatkeep.user_id', true)"
_THREAD_OF_USER = f"SELECT 1 FROM threads t WHERE t.id = {{table}}.thread_id AND t.user_id = {_USER}"

#: table -> the condition (besides the system caller) under which a row is the caller's
POLICIES = {
    "threads": f"user_id = {_USER}",
    "messages": f"EXISTS ({_THREAD_OF_USER.format(table='messages')})",
    "parts": f"EXISTS ({_THREAD_OF_USER.format(table='parts')})",
    "streams": f"EXISTS ({_THREAD_OF_USER.format(table='streams')})",
    "stream_chunks": (
        "EXISTS (SELECT 1 FROM streams s JOIN threads t ON t.id = s.thread_id "
        f"WHERE s.id = stream_chunks.stream_id AND t.user_id = {_USER})"
    ),
}


def upgrade() -> None:
    op.create_index(op.f("ix_threads_user_id_created_at_id"), "threads", ["user_id", "created_at", "id"], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, owned in POLICIES.items():
        rule = f"{_SYSTEM} OR {owned}"
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY chatkeep_caller ON {table} USING ({rule}) WITH CHECK ({rule})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in POLICIES:
            op.execute(f"DROP POLICY chatkeep_caller ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.drop_index(op.f("ix_threads_user_id_created_at_id"), table_name="threads")
