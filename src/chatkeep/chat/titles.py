"""Thread titles: plain text on one line, at most 80 characters, made from the first messages.

* The ``demo`` model, and any model that fails or has not answered within ``model_timeout`` seconds, gives the
  first words of the first user message; other models are asked for a short title.
* Either way the title is plain text: Markdown is reduced to its words (``**Trip** to [Oslo](…)`` → ``Trip to
  Oslo``), surrounding quotes and a ``Title:`` prefix are dropped, lines are joined, and it is cut at a word
  boundary to fit.
* :func:`generate_title` (``POST /api/threads/{id}/title``): a thread that has a title keeps it unless ``force``.
* :class:`AutoTitler`: chatkeep titles an untitled thread itself after its first reply, in the background, once;
  a title set meanwhile by anyone else wins (it only fills a title that is still empty).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from markdown_it import MarkdownIt

from chatkeep.chat.convert import to_model_messages
from chatkeep.errors import ThreadNotFound
from chatkeep.protocol.messages import is_ai_sdk_format
from chatkeep.providers.base import Model, ModelError, ModelMessage, ModelRequest, TextContent, TextDelta
from chatkeep.store import ChatStore, MessageTree

__all__ = ["MAX_TITLE_LENGTH", "AutoTitler", "generate_title", "heuristic_title", "make_title", "plain_title"]

log = logging.getLogger("chatkeep.chat")

MAX_TITLE_LENGTH = 80
_WORDS = 6
_PROMPT = (
    "Write a title of at most six words for the conversation below. Answer with the title only: plain text, no "
    "quotes, no punctuation at the end."
)
#: Only the start of a message is read for a title (a first message may be megabytes of pasted text).
_READ_CHARS = 2000
#: A model answer longer than this is not a title: the rest is not read.
_MODEL_CHARS = 500
_QUOTES = "\"'`“”‘’«»„"
_LABEL = re.compile(r"^(?:title|thread title)\s*:\s*", re.IGNORECASE)
# Markdown parsed as CommonMark by markdown-it-py (a dependency of rich, which we use anyway): hand-written
# regular expressions miss nesting, escapes and reference links.
_MARKDOWN = MarkdownIt("commonmark")


def _markdown_words(markdown: str) -> str:
    """The text of ``markdown`` without its markup, blocks joined by spaces. Code blocks count only when there is
    nothing else (a question about pasted code is titled by the question)."""
    prose: list[str] = []
    code: list[str] = []
    for token in _MARKDOWN.parse(markdown):
        if token.type in ("fence", "code_block"):
            code.append(token.content)
        elif token.type == "inline":
            for child in token.children or ():
                if child.type in ("text", "code_inline", "image"):  # an image's content is its alt text
                    prose.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    prose.append(" ")
            prose.append(" ")
    return "".join(prose) if "".join(prose).strip() else " ".join(code)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut:  # not at a word's end: drop the word cut in two
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:!?-") + "…"


def plain_title(text: str, max_length: int = MAX_TITLE_LENGTH) -> str:
    """``text`` as a title (see the module docstring); empty when nothing is left."""
    title = " ".join(_markdown_words(text[:_READ_CHARS]).split())
    title = _LABEL.sub("", title.strip(_QUOTES + " "))
    return _shorten(title.lstrip(_QUOTES + " ").rstrip(_QUOTES + " ."), max_length)


def heuristic_title(messages: Sequence[Mapping[str, Any]], max_length: int = MAX_TITLE_LENGTH) -> str | None:
    """The first words of the first user message's text, or ``None`` when there is no text."""
    for message in messages:
        if message.get("role") != "user":
            continue
        text = "\n\n".join(p["text"] for p in message.get("parts", ()) if p.get("type") == "text")
        words = plain_title(text, max_length=_READ_CHARS).split()
        if words:
            title = " ".join(words[:_WORDS])
            if len(words) > _WORDS:
                title = title.rstrip(",.;:!?-") + "…"
            return _shorten(title, max_length)
    return None


async def _model_title(model: Model, messages: Sequence[Mapping[str, Any]], max_length: int) -> str:
    request = ModelRequest(messages=[ModelMessage("system", [TextContent(_PROMPT)]), *to_model_messages(messages[:4])])
    text = ""
    events = model.stream(request)
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                text += event.delta
                if len(text) > _MODEL_CHARS:
                    break
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    return plain_title(first_line, max_length)


async def make_title(
    model: Model,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_length: int = MAX_TITLE_LENGTH,
    model_timeout: float = 60.0,
) -> str | None:
    """A title for ``messages`` (UIMessages, oldest first): the model's, else the heuristic's; ``None`` when
    there is no text to make one from."""
    max_length = min(max_length, MAX_TITLE_LENGTH)
    title = ""
    if model.name != "demo":
        try:
            async with asyncio.timeout(model_timeout):
                title = await _model_title(model, messages, max_length)
        except (ModelError, TimeoutError) as exc:
            log.info("the model gave no title (%s); using the first words instead", exc)
    return title or heuristic_title(messages, max_length)


def _title_source(tree: MessageTree) -> list[dict[str, Any]]:
    """The active branch's AI SDK messages (other formats have no parts to read)."""
    return [m.ui_message() for m in tree.branch() if is_ai_sdk_format(m.format)]


async def generate_title(
    store: ChatStore,
    model: Model,
    user_id: str,
    thread_id: str,
    *,
    force: bool = False,
    fallback_messages: Sequence[Mapping[str, Any]] = (),
    max_length: int = MAX_TITLE_LENGTH,
    model_timeout: float = 60.0,
) -> str | None:
    """Give the thread a title from its first messages (or ``fallback_messages`` while none are stored), at most
    ``max_length`` characters, and store it before returning. Returns the thread's title, which is the old one
    when it had one and not ``force``."""
    thread = await store.get_thread(user_id, thread_id)
    if thread.title and not force:
        return thread.title
    messages: Sequence[Mapping[str, Any]] = _title_source(await store.load_tree(user_id, thread_id))
    title = await make_title(model, messages or fallback_messages, max_length=max_length, model_timeout=model_timeout)
    if not title:
        return thread.title
    await store.update_thread(user_id, thread_id, title=title)
    return title


class AutoTitler:
    """Titles untitled threads after their first reply, in the background, once per thread.

    :meth:`after_reply` never waits: it starts a task that reads the thread and, if it is still untitled and its
    active branch holds one user message (the reply answered the thread's first message), makes a title
    (:func:`make_title`) and stores it only if the thread is still untitled then
    (:meth:`ChatStore.title_untitled`): a title a client sets meanwhile, by hand or with ``POST
    /api/threads/{id}/title``, is never overwritten. A thread is looked at once per process (the last
    ``remember`` threads are remembered), whatever came of it. :meth:`wait` lets the title endpoint hand out the
    title being made instead of making a second one.
    """

    def __init__(self, store: ChatStore, *, max_length: int = MAX_TITLE_LENGTH, remember: int = 10_000) -> None:
        self.store = store
        self.max_length = max_length
        self._remember = remember
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def after_reply(self, user_id: str, thread_id: str, model: Model, *, model_timeout: float) -> None:
        """A reply was stored in the thread: title the thread if this was its first reply and it has no title."""
        key = (user_id, thread_id)
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        task = asyncio.create_task(self._title(user_id, thread_id, model, model_timeout))
        self._running[key] = task
        task.add_done_callback(lambda _task: self._running.pop(key, None))

    async def _title(self, user_id: str, thread_id: str, model: Model, model_timeout: float) -> None:
        try:
            if (await self.store.get_thread(user_id, thread_id)).title:
                return
            messages = _title_source(await self.store.load_tree(user_id, thread_id))
            if sum(1 for m in messages if m.get("role") == "user") != 1:
                return  # not the first reply: a thread untitled by then stays so
            title = await make_title(model, messages, max_length=self.max_length, model_timeout=model_timeout)
            if title:
                await self.store.title_untitled(user_id, thread_id, title)
        except ThreadNotFound:
            pass  # deleted meanwhile
        except Exception:  # a title is not worth more than a log line
            log.exception("could not title thread %s", thread_id)

    async def wait(self, user_id: str, thread_id: str) -> None:
        """Wait until the title being made for the user's thread, if any, is stored (or given up)."""
        task = self._running.get((user_id, thread_id))
        if task is not None:
            await asyncio.wait([task])  # never cancels it, unlike awaiting it would when the caller is cancelled

    async def wait_all(self) -> None:
        """Wait until every title being made is stored (or given up)."""
        while self._running:
            await asyncio.wait(list(self._running.values()))

    async def close(self) -> None:
        """Stop making titles: those under way are given up."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
