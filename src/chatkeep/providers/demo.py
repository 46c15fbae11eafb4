"""``demo``: an offline, deterministic model, so chatkeep runs and is testable with no API key.

Its behaviour, decided from the latest user message (case-insensitive):

* it contains ``weather in <City>``: it calls the server-side tool ``get_weather`` with ``{"city": "<City>"}``;
  once the result is back, it answers in text using it;
* it contains ``think``: a reasoning part comes before the text;
* it contains ``source``: the reply carries a ``source-url`` part;
* it contains ``count to <N>``: the text is the numbers 1 to N, one chunk each;
* it contains ``data``: the reply ends with a ``data-stats`` part (``{"words": …, "characters": …}`` of the
  prompt), so custom data parts can be tried too;
* otherwise it answers ``You said: <text>``, streamed word by word.

Each chunk waits ``delay_ms`` (``CHATKEEP_DEMO_DELAY_MS``, default 15) first, so streaming is visible.

Its ``suggestions`` (which the chat page offers in an empty chat) are prompts that set off these behaviours: a
tool call, reasoning with a source, Markdown with code echoed back, a long streamed reply; a test checks that each
still does what its label says.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

from chatkeep.providers.base import (
    Data,
    Finish,
    ModelEvent,
    ModelMessage,
    ModelRequest,
    PromptSuggestion,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    Source,
    TextContent,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolInputDelta,
    ToolInputStart,
    ToolResultContent,
)

__all__ = ["DemoModel"]

_WEATHER = re.compile(r"weather in ([^\W\d_][\w'.\- ]*?)\s*(?:[?!.,;:]|$)", re.IGNORECASE | re.UNICODE)
_COUNT = re.compile(r"count to (\d+)", re.IGNORECASE)
MAX_COUNT = 100_000

SUGGESTIONS = (
    PromptSuggestion("Call a tool", "What is the weather in Paris?"),
    PromptSuggestion("Think, then cite a source", "Think it over, then give me a source."),
    PromptSuggestion(
        "Render Markdown and code",
        "Show me some Markdown:\n\n- **bold**, *italic* and `inline code`\n- a [link](https://example.com)\n\n"
        '```python\ndef greet(name: str) -> str:\n    return f"Hello, {name}!"\n```',
    ),
    PromptSuggestion("Stream a long reply", "Count to 300"),
)


class DemoModel:
    """See the module docstring. ``delay_ms`` is the wait before each chunk."""

    def __init__(self, *, delay_ms: float = 15) -> None:
        self.delay = max(delay_ms, 0) / 1000

    @property
    def name(self) -> str:
        return "demo"

    @property
    def suggestions(self) -> Sequence[PromptSuggestion]:
        return SUGGESTIONS

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        prompt = _latest_user_text(request.messages)
        lowered = prompt.lower()
        results = _tool_results_since_last_user(request.messages)
        weather = _WEATHER.search(prompt)

        if "think" in lowered and not results:
            yield ReasoningStart("r0")
            for word in _words(f"The user wrote {len(prompt.split())} words. Let me answer step by step."):
                await self._pause()
                yield ReasoningDelta("r0", word)
            yield ReasoningEnd("r0")

        if weather and not results and any(t.name == "get_weather" for t in request.tools):
            city = weather.group(1).strip()
            call_id = "call-weather-1"
            yield ToolInputStart(call_id, "get_weather")
            for piece in ('{"city":', f' "{city}"', "}"):
                await self._pause()
                yield ToolInputDelta(call_id, piece)
            yield ToolCall(call_id, "get_weather", {"city": city})
            yield Finish("tool-calls")
            return

        if results:
            result = results[-1]
            if result.is_error:
                text = f"I could not get that: {result.output}"
            elif isinstance(result.output, dict) and {"city", "temperatureC", "condition"} <= result.output.keys():
                out = result.output
                text = f"The weather in {out['city']} is {out['temperatureC']}°C and {out['condition']}."
            else:
                text = f"The tool {result.tool_name} answered."
            pieces = _words(text)
        elif count := _COUNT.search(prompt):
            n = min(int(count.group(1)), MAX_COUNT)
            pieces = [str(i) if i == 1 else f" {i}" for i in range(1, n + 1)]
        else:
            pieces = _words(f"You said: {prompt}")

        yield TextStart("txt-0")
        for piece in pieces:
            await self._pause()
            yield TextDelta("txt-0", piece)
        yield TextEnd("txt-0")

        if "source" in lowered:
            yield Source("src-1", "https://example.com/chatkeep-demo", "chatkeep demo source")
        if "data" in lowered:
            yield Data("stats", {"words": len(prompt.split()), "characters": len(prompt)}, id="stats-1")
        yield Finish("stop")

    async def _pause(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)


def _words(text: str) -> list[str]:
    """``"a b c"`` → ``["a", " b", " c"]``: the pieces join back to the text."""
    words = text.split(" ")
    return [words[0], *(f" {w}" for w in words[1:])] if text else []


def _latest_user_text(messages: Sequence[ModelMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return " ".join(c.text for c in message.content if isinstance(c, TextContent)).strip()
    return ""


def _tool_results_since_last_user(messages: Sequence[ModelMessage]) -> list[ToolResultContent]:
    results: list[ToolResultContent] = []
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "tool":
            results[:0] = [c for c in message.content if isinstance(c, ToolResultContent)]
    return results
