"""Your own model or agent as an async generator: the easiest way to plug one into chatkeep.

    async def echo(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield "You said: "
        yield last_user_text(request)

    ChatService(store, FunctionModel(echo))

Strings are text deltas (a text part is opened and closed around them); any :data:`ModelEvent` passes through.
A missing :class:`Finish` is added (``"tool-calls"`` if the step called tools, else ``"stop"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from chatkeep.providers.base import (
    Finish,
    ModelEvent,
    ModelRequest,
    TextContent,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
)

__all__ = ["FunctionModel", "last_user_text"]

StepFunction = Callable[[ModelRequest], AsyncIterator[ModelEvent | str]]


def last_user_text(request: ModelRequest) -> str:
    """The text of the newest user message of the request."""
    for message in reversed(request.messages):
        if message.role == "user":
            return "".join(c.text for c in message.content if isinstance(c, TextContent))
    return ""


class FunctionModel:
    def __init__(self, fn: StepFunction, *, name: str = "function") -> None:
        self._fn = fn
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        text_id: str | None = None
        count = 0
        called_tools = False
        async for item in self._fn(request):
            if isinstance(item, str):
                if text_id is None:
                    text_id = f"txt-{count}"
                    count += 1
                    yield TextStart(text_id)
                yield TextDelta(text_id, item)
                continue
            if text_id is not None and not isinstance(item, TextDelta | TextEnd):
                yield TextEnd(text_id)
                text_id = None
            called_tools = called_tools or isinstance(item, ToolCall)
            yield item
            if isinstance(item, Finish):
                return
        if text_id is not None:
            yield TextEnd(text_id)
        yield Finish("tool-calls" if called_tools else "stop")
