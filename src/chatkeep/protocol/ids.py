"""Identifiers in the shape the AI SDK uses, but from a cryptographic source."""

from __future__ import annotations

import secrets
import string

__all__ = ["generate_id"]

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


def generate_id(prefix: str | None = None, *, size: int = 16) -> str:
    """A random id of ``size`` characters from ``0-9A-Za-z`` (about 95 bits at the default size).

    Matches the AI SDK's ``generateId`` / ``createIdGenerator({prefix})`` shapes (``74br9kQZRJVFfwpF``,
    ``msg-y8M01rbu8GY5SZR5``) so ids look native to clients, but uses :mod:`secrets`.
    """
    body = "".join(secrets.choice(_ALPHABET) for _ in range(size))
    return f"{prefix}-{body}" if prefix else body
