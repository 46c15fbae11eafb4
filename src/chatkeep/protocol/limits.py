"""Size limits of what a client may store: the parts and texts of a message, inline attachments, a thread's title.

Checked before anything is stored, by the API for every request and by ``chatkeep import`` for every record, with
the same limits (:class:`chatkeep.settings.Settings` is a :class:`SizeLimits`). Over a limit is
:class:`PayloadTooLarge` (HTTP 413) naming the place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from chatkeep.errors import PayloadTooLarge

__all__ = ["SizeLimits", "check_message_size", "check_title"]


class SizeLimits(Protocol):
    """The limits (``Settings`` has them all: ``CHATKEEP_MAX_PARTS_PER_MESSAGE`` …)."""

    @property
    def max_parts_per_message(self) -> int: ...
    @property
    def max_text_chars(self) -> int: ...
    @property
    def max_attachment_bytes(self) -> int: ...
    @property
    def max_title_chars(self) -> int: ...


def check_message_size(message: Mapping[str, Any], limits: SizeLimits, loc: Sequence[str | int]) -> None:
    """Refuse a message over the per-message limits: parts, text length, inline attachment size, with the location
    of the part that is too large. Anything that is not the expected shape is left to validation."""
    parts = message.get("parts")
    if not isinstance(parts, list):
        return
    if len(parts) > limits.max_parts_per_message:
        raise PayloadTooLarge([*loc, "parts"], f"more than {limits.max_parts_per_message} parts")
    for index, part in enumerate(parts):
        if not isinstance(part, Mapping):
            continue
        text = part.get("text")
        if isinstance(text, str) and len(text) > limits.max_text_chars:
            raise PayloadTooLarge([*loc, "parts", index, "text"], f"longer than {limits.max_text_chars} characters")
        url = part.get("url")
        if isinstance(url, str) and url.startswith("data:"):
            size = len(url.partition(",")[2]) * 3 // 4  # base64 payload → bytes, near enough
            if size > limits.max_attachment_bytes:
                raise PayloadTooLarge(
                    [*loc, "parts", index, "url"], f"an attachment larger than {limits.max_attachment_bytes} bytes"
                )


def check_title(title: str | None, limits: SizeLimits, loc: Sequence[str | int]) -> None:
    """Refuse a thread title longer than ``max_title_chars``."""
    if title is not None and len(title) > limits.max_title_chars:
        raise PayloadTooLarge(loc, f"longer than {limits.max_title_chars} characters")
