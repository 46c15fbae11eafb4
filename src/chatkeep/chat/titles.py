"""Thread titles from the first messages.

The ``demo`` model (and any model that fails) gives the first words of the first user message; other models
are asked for a short title. A thread that has a title keeps it unless ``force``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from chatkeep.chat.convert import to_model_messages
from chatkeep.providers.base import Model, ModelError, ModelMessage, ModelRequest, TextContent, TextDelta
from chatkeep.store import ChatStore

__all__ = ["MAX_TITLE_LENGTH", "generate_title", "heuristic_title"]

MAX_TITLE_LENGTH = 80
_WORDS = 6
_PROMPT = (
    "Write a title of at most six words for the conversation below. Answer with the title only: no quotes, "
    "no punctuation at the end."
)


def heuristic_title(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The first words of the first user message's text, or ``None`` when there is no text."""
    for message in messages:
        if message.get("role") != "user":
            continue
        text = " ".join(p["text"] for p in message.get("parts", ()) if p.get("type") == "text").split()
        if text:
            title = " ".join(text[:_WORDS])
            if len(text) > _WORDS:
                title = title.rstrip(",.;:!?-") + "…"
            return title[:MAX_TITLE_LENGTH]
    return None


async def _model_title(model: Model, messages: Sequence[Mapping[str, Any]]) -> str | None:
    request = ModelRequest(messages=[ModelMessage("system", [TextContent(_PROMPT)]), *to_model_messages(messages[:4])])
    text = ""
    async for event in model.stream(request):
        if isinstance(event, TextDelta):
            text += event.delta
    title = re.sub(r"\s+", " ", text).strip().strip("\"'“”‘’").rstrip(".").strip()
    return title[:MAX_TITLE_LENGTH] or None


async def generate_title(
    store: ChatStore,
    model: Model,
    user_id: str,
    thread_id: str,
    *,
    force: bool = False,
    fallback_messages: Sequence[Mapping[str, Any]] = (),
    max_length: int = MAX_TITLE_LENGTH,
) -> str | None:
    """Give the thread a title from its first messages (or ``fallback_messages`` while none are stored), at most
    ``max_length`` characters, and store it before returning. Returns the thread's title, which is the old one
    when it had one and not ``force``."""
    thread = await store.get_thread(user_id, thread_id)
    if thread.title and not force:
        return thread.title
    tree = await store.load_tree(user_id, thread_id)
    messages: Sequence[Mapping[str, Any]] = [m.ui_message() for m in tree.branch()] or fallback_messages
    title = None
    if model.name != "demo":
        try:
            title = await _model_title(model, messages)
        except ModelError:
            title = None
    title = (title or heuristic_title(messages) or "")[:max_length]
    if not title:
        return thread.title
    await store.update_thread(user_id, thread_id, title=title)
    return title
