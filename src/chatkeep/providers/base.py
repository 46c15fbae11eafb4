"""The one small interface every model speaks: an async stream of :data:`ModelEvent`.

A model (the offline ``demo``, an OpenAI-compatible server, your own agent) receives a :class:`ModelRequest`
(the conversation as :class:`ModelMessage` s, the tools it may call) and yields events as they happen. It runs
**one step**: it ends with :class:`Finish`; when the reason is ``"tool-calls"`` the chat loop runs the tools
and calls the model again with their results. Knows nothing of HTTP, the database or the UI stream format.

Invariants a model must keep (the chat loop relies on them):

* every ``TextDelta``/``ReasoningDelta`` is preceded by a ``TextStart``/``ReasoningStart`` with the same id
  and followed, eventually, by the matching ``*End``; ids are unique among open parts;
* a ``ToolCall`` carries the complete, parsed ``input``; ``ToolInputStart``/``ToolInputDelta`` before it are
  optional (they stream the input text as it is generated) but if sent, use the same ``tool_call_id``;
* a ``ToolResult`` follows the ``ToolCall`` (with ``provider_executed``) it answers;
* the last event is exactly one ``Finish``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "Data",
    "FilePart",
    "Finish",
    "FinishReason",
    "Model",
    "ModelError",
    "ModelEvent",
    "ModelMessage",
    "ModelRequest",
    "PromptSuggestion",
    "ReasoningContent",
    "ReasoningDelta",
    "ReasoningEnd",
    "ReasoningStart",
    "Source",
    "TextContent",
    "TextDelta",
    "TextEnd",
    "TextStart",
    "ToolCall",
    "ToolCallContent",
    "ToolInputDelta",
    "ToolInputStart",
    "ToolResult",
    "ToolResultContent",
    "SuggestsPrompts",
    "ToolSpec",
    "Usage",
    "prompt_suggestions",
]

FinishReason: TypeAlias = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]


# -- what the model is given ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextContent:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file the user attached: ``url`` is a hosted URL or a ``data:`` URL."""

    media_type: str
    url: str
    filename: str | None = None
    type: Literal["file"] = "file"


@dataclass(frozen=True, slots=True)
class ReasoningContent:
    text: str
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class ToolCallContent:
    tool_call_id: str
    tool_name: str
    input: Any
    type: Literal["tool-call"] = "tool-call"


@dataclass(frozen=True, slots=True)
class ToolResultContent:
    tool_call_id: str
    tool_name: str
    #: the tool's output (JSON), or the error text when ``is_error``
    output: Any
    is_error: bool = False
    type: Literal["tool-result"] = "tool-result"


ContentPart: TypeAlias = TextContent | FilePart | ReasoningContent | ToolCallContent | ToolResultContent


@dataclass(frozen=True, slots=True)
class ModelMessage:
    """One message of the conversation as models see it (the AI SDK's ``ModelMessage``).

    ``system``: text only. ``user``: text and files. ``assistant``: text, reasoning and tool calls.
    ``tool``: tool results, answering the tool calls of the assistant message just before it.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: Sequence[ContentPart]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and the JSON Schema of its input."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    messages: Sequence[ModelMessage]
    tools: Sequence[ToolSpec] = ()
    #: free-form settings passed through to the model (temperature, max tokens, …)
    settings: Mapping[str, Any] = field(default_factory=dict)


# -- what the model yields -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextStart:
    id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TextEnd:
    id: str


@dataclass(frozen=True, slots=True)
class ReasoningStart:
    id: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ReasoningEnd:
    id: str


@dataclass(frozen=True, slots=True)
class ToolInputStart:
    tool_call_id: str
    tool_name: str


@dataclass(frozen=True, slots=True)
class ToolInputDelta:
    tool_call_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call. ``input`` is the parsed JSON the model produced.

    ``provider_executed``: the model (an agent with its own tools, a provider-side tool such as web search) runs
    the tool itself and reports the result with a :class:`ToolResult`; chatkeep does not run it.
    """

    tool_call_id: str
    tool_name: str
    input: Any
    provider_executed: bool = False


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of a tool call the model ran itself (see ``ToolCall.provider_executed``).

    ``output`` is JSON; with ``is_error`` it is the error text.
    """

    tool_call_id: str
    output: Any
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Source:
    """A URL the answer draws on."""

    source_id: str
    url: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Data:
    """A custom data part ``data-<name>`` (e.g. a chart, a status); with an ``id``, a later ``Data`` of the
    same name and id replaces it. ``transient`` data reaches the client but is not stored."""

    name: str
    data: Any
    id: str | None = None
    transient: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    usage: Usage = field(default_factory=Usage)


ModelEvent: TypeAlias = (
    TextStart
    | TextDelta
    | TextEnd
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | ToolInputStart
    | ToolInputDelta
    | ToolCall
    | ToolResult
    | Source
    | Data
    | Finish
)


class ModelError(Exception):
    """The model failed (unreachable server, refused request, malformed output).

    ``message`` is safe to show to the user; ``status`` is the upstream HTTP status when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


@runtime_checkable
class Model(Protocol):
    """Anything with a name and a ``stream`` method is a model."""

    @property
    def name(self) -> str: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Run one step of the model on ``request``; see the module docstring for the event rules."""
        ...


@dataclass(frozen=True, slots=True)
class PromptSuggestion:
    """A prompt to try, offered in an empty chat: ``label`` says in a few words what it shows, ``prompt`` is what
    is sent (as is) when it is picked."""

    label: str
    prompt: str


@runtime_checkable
class SuggestsPrompts(Protocol):
    """Optional for a model: prompts the chat page offers a first-time user in an empty chat. A model without
    ``suggestions`` offers none (a real model answers anything; what to ask is its deployer's business)."""

    @property
    def suggestions(self) -> Sequence[PromptSuggestion]: ...


def prompt_suggestions(model: Model) -> tuple[PromptSuggestion, ...]:
    """The prompts ``model`` offers to try: its ``suggestions``, or none."""
    return tuple(model.suggestions) if isinstance(model, SuggestsPrompts) else ()
