"""The HTTP edge: FastAPI routes over :class:`chatkeep.store.ChatStore`, with errors mapped to HTTP here only."""

from chatkeep.api.app import create_app, create_router, include_chatkeep
from chatkeep.api.auth import CurrentUser, get_current_user

__all__ = ["CurrentUser", "create_app", "create_router", "get_current_user", "include_chatkeep"]
