"""chatkeep: keep AI chat conversations in a real database, behind the wire formats chat frontends speak.

The public API::

    from chatkeep import ChatStore, create_app, include_chatkeep, Settings
"""

from chatkeep.api import create_app, create_router, get_current_user, include_chatkeep
from chatkeep.errors import ChatkeepError
from chatkeep.protocol import UIMessage, generate_id, parse_ui_message
from chatkeep.settings import Settings
from chatkeep.store import ChatStore, MessageTree, Page, StoredMessage, Thread

__all__ = [
    "ChatStore",
    "ChatkeepError",
    "MessageTree",
    "Page",
    "Settings",
    "StoredMessage",
    "Thread",
    "UIMessage",
    "create_app",
    "create_router",
    "generate_id",
    "get_current_user",
    "include_chatkeep",
    "parse_ui_message",
]
