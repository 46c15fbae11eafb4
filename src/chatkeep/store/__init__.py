"""Storage: the schema, its migrations, and :class:`ChatStore`, the domain API over it.

Imports nothing from the web layer. Only this package talks to SQLAlchemy.
"""

from chatkeep.store._db import SYSTEM, Caller, set_caller
from chatkeep.store.chat_store import DEFAULT_FORMAT, UNSET, ChatStore, MessageWrite, NewStream
from chatkeep.store.engine import display_database_url, make_engine, normalize_database_url
from chatkeep.store.records import MessageTree, Page, StoredMessage, Thread, ThreadStatus
from chatkeep.store.tool_approvals import ApprovalRequest, ToolApprovals

__all__ = [
    "ApprovalRequest",
    "DEFAULT_FORMAT",
    "SYSTEM",
    "UNSET",
    "Caller",
    "ChatStore",
    "MessageTree",
    "MessageWrite",
    "NewStream",
    "Page",
    "StoredMessage",
    "Thread",
    "ThreadStatus",
    "ToolApprovals",
    "display_database_url",
    "make_engine",
    "normalize_database_url",
    "set_caller",
]
