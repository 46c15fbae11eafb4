"""Identifiers in the shape the AI SDK uses, but from a cryptographic source; and which ids a client may choose."""

from __future__ import annotations

import secrets
import string

from chatkeep.errors import InvalidInput, ValidationIssue

__all__ = ["MAX_ID_LENGTH", "check_new_id", "generate_id"]

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase

#: ids are stored in columns of this many characters
MAX_ID_LENGTH = 255


def generate_id(prefix: str | None = None, *, size: int = 16) -> str:
    """A random id of ``size`` characters from ``0-9A-Za-z`` (about 95 bits at the default size).

    Matches the AI SDK's ``generateId`` / ``createIdGenerator({prefix})`` shapes (``74br9kQZRJVFfwpF``,
    ``msg-y8M01rbu8GY5SZR5``) so ids look native to clients, but uses :mod:`secrets`.
    """
    body = "".join(secrets.choice(_ALPHABET) for _ in range(size))
    return f"{prefix}-{body}" if prefix else body


def check_new_id(value: str, loc: tuple[str | int, ...]) -> None:
    """Refuse (:class:`InvalidInput` at ``loc``) an id a client chose that could be stored but never addressed:
    empty or too long for its column, holding a ``/`` or being ``.``/``..``, which no URL path segment can carry
    (``%2F`` is decoded before routing, and clients remove dot segments), or holding U+FFFD, which the API's path
    parameters refuse (it is what bytes that were not UTF-8 decode to). Used by the API for ids in request
    bodies and by ``chatkeep import`` for every thread and message id of a record."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        problem = f"an id has 1 to {MAX_ID_LENGTH} characters"
    elif "/" in value or value in (".", ".."):
        problem = "an id names its thread or message in URLs, so it may not contain '/' nor be '.' or '..'"
    elif "\ufffd" in value:
        problem = "an id may not contain U+FFFD (what bytes that were not UTF-8 decode to)"
    else:
        return
    raise InvalidInput([ValidationIssue(loc, problem, "invalid_id")])
