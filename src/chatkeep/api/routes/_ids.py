"""Ids that clients choose in a request body and that later name a thread or a message in URL paths."""

from __future__ import annotations

from chatkeep.errors import InvalidInput, ValidationIssue

__all__ = ["MAX_ID_LENGTH", "check_new_id"]

#: ids are stored in columns of this many characters
MAX_ID_LENGTH = 255


def check_new_id(value: str, loc: tuple[str | int, ...]) -> None:
    """Refuse (422 at ``loc``) an id that could be stored but never addressed: empty or too long for its column,
    or holding a ``/`` or being ``.``/``..``, which no URL path segment can carry (``%2F`` is decoded before
    routing, and clients remove dot segments)."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        problem = f"an id has 1 to {MAX_ID_LENGTH} characters"
    elif "/" in value or value in (".", ".."):
        problem = "an id names its thread or message in URLs, so it may not contain '/' nor be '.' or '..'"
    else:
        return
    raise InvalidInput([ValidationIssue(loc, problem, "invalid_id")])
