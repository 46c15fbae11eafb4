"""A `Pydantic AI <https://ai.pydantic.dev>`_ agent as a chatkeep model: ``PydanticAIModel(agent)``.

    from pydantic_ai import Agent
    from chatkeep.providers.pydantic_ai import PydanticAIModel

    agent = Agent("openai:gpt-5.2", instructions="Be brief.")

    @agent.tool_plain
    def get_weather(city: str) -> str: ...

    ChatService(store, PydanticAIModel(agent))

Needs the ``pydantic-ai`` extra (``pip install 'chatkeep[pydantic-ai]'``: ``pydantic-ai-slim`` 2.61 or newer,
tested with 2.61 and 2.68); only this module imports it, and importing it without the extra raises an
``ImportError`` saying so. Built on ``Agent.run_stream_events``, whose events it translates.

One :meth:`PydanticAIModel.stream` call is one whole agent run: the agent calls its model, runs **its own tools**
and calls the model again, as many steps as it needs, and chatkeep streams all of it as one step of one reply.

What this module guarantees:

* the events obey the rules of :mod:`chatkeep.providers.base`: text and thinking arrive as
  ``TextStart``/``TextDelta``/``TextEnd`` and ``ReasoningStart``/``ReasoningDelta``/``ReasoningEnd`` runs, one per
  pydantic-ai part, with ids unique within the reply (``txt-0``, ``txt-1``, …, ``rsn-0``, …); every part is
  closed before the stream ends, also when the run fails;
* every tool call of the agent (its function tools, its output tool, and built-in tools its provider runs) is a
  ``ToolCall`` with ``provider_executed=True`` (chatkeep shows it and does not run it), preceded by
  ``ToolInputStart``/``ToolInputDelta`` as the model streams the arguments, and answered by exactly one
  ``ToolResult``: the tool's return value as JSON, or ``is_error=True`` with readable text when the tool failed,
  asked the model to retry (``ModelRetry``, invalid arguments, unknown tool), was denied or interrupted. A call
  the run leaves unanswered (a deferred tool, a failed run) is answered with an error before the stream ends;
* tool call ids are pydantic-ai's, made unique within the reply when a model repeats one;
* the web pages a text part cites (``TextPart.citations``) are ``Source`` events, each URL once per reply;
* the last event is exactly one ``Finish``: ``"stop"`` (also when the agent's last response ended on its output
  tool), ``"length"``, ``"content-filter"`` or ``"error"`` as pydantic-ai reports it, ``"other"`` when the run
  ended waiting on deferred tool calls; its usage is the whole run's;
* errors of the run (:class:`~pydantic_ai.exceptions.AgentRunError` and its subclasses such as
  ``UnexpectedModelBehavior``, ``ModelHTTPError``, ``UsageLimitExceeded``, and a ``FallbackModel``'s
  ``FallbackExceptionGroup``) are raised as :class:`~chatkeep.providers.base.ModelError` with a short message
  that never contains the provider's response body (the original is logged and chained as ``__cause__``). Any
  other exception (a bug in a tool, a misconfigured agent) propagates unchanged.

How the conversation reaches the agent: the last message, when it is the user's, is the run's ``user_prompt``;
the messages before it are its ``message_history``:

* ``system`` → ``SystemPromptPart``; ``user`` → ``UserPromptPart`` (a string for a single text, else a list):
  ``data:`` URLs → ``BinaryContent`` (``BinaryImage`` for images); ``http(s)`` URLs → ``ImageUrl``,
  ``AudioUrl``, ``VideoUrl`` or ``DocumentUrl`` by media type; the file name, when known, is the identifier;
  any other URL → a short text note naming the file (which file types work depends on the agent's model);
* ``assistant`` → ``ModelResponse`` with ``TextPart``, ``ThinkingPart`` and ``ToolCallPart``; its tool results →
  ``ToolReturnPart`` (``outcome="failed"`` for errors; pydantic-ai 2 replaced ``RetryPromptPart`` with this).
  A reply in which the agent ran tools and then went on is split back into its steps (response, tool returns,
  response), as pydantic-ai produced them; tool calls without a result are left out.

``ModelRequest.settings`` are passed as pydantic-ai ``model_settings`` (``temperature``, ``top_p``,
``max_tokens``, ``seed``, ``stop``, ``presence_penalty``, ``frequency_penalty``, ``parallel_tool_calls``, with
the AI SDK's camelCase spellings too); other keys are ignored.

Limits:

* ``ModelRequest.tools`` (the tools registered with chatkeep's ``ToolRegistry``) are ignored: the agent uses its
  own tools. Register tools on the agent. Tools needing approval or run elsewhere (pydantic-ai's deferred tools)
  are not supported: with ``DeferredToolRequests`` among the agent's output types such a call ends the run with
  an error result and ``Finish("other")`` (without it, pydantic-ai itself raises ``UserError``);
* pydantic-ai sends the agent's ``system_prompt`` only when the message history is empty, and chatkeep does not
  store it, so from the second turn on the model would not see it: give the agent ``instructions`` instead (sent
  with every request), or a ``system_prompt`` to ``ChatService``;
* a structured ``output_type`` shows as the call of the agent's output tool (its input is the output), not as
  text; files the model generates, custom events, and provider metadata (signatures, part ids) are not streamed,
  so thinking goes back to the model as plain thinking text;
* chatkeep's idle timeout (``CHATKEEP_MODEL_TIMEOUT_S``) also runs while the agent runs a tool, which streams
  nothing: give slow tools a larger timeout. When chatkeep cancels the run (that timeout, a stop), the run and
  its tools are cancelled, and a tool call in progress stays without a result in the stored reply (the next turn
  leaves it out of the history);
* a request that does not end with a user message (chatkeep's title generation may send one) runs the agent on
  the history with no new prompt, as pydantic-ai resumes a run: an agent without ``instructions`` then ends at
  once with the last assistant message as its output, streaming nothing but the ``Finish``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

try:
    from pydantic import ConfigDict, TypeAdapter
    from pydantic_ai import (
        AgentRunResultEvent,
        AgentStreamEvent,
        AudioUrl,
        BinaryContent,
        DocumentUrl,
        FunctionToolCallEvent,
        FunctionToolResultEvent,
        ImageUrl,
        ModelSettings,
        NativeToolCallPart,
        NativeToolReturnPart,
        OutputToolCallEvent,
        OutputToolResultEvent,
        PartDeltaEvent,
        PartEndEvent,
        PartStartEvent,
        SystemPromptPart,
        TextPart,
        TextPartDelta,
        ThinkingPart,
        ThinkingPartDelta,
        ToolCallPart,
        ToolCallPartDelta,
        ToolReturnPart,
        UserPromptPart,
        VideoUrl,
    )
    from pydantic_ai import ModelMessage as PydanticAIMessage
    from pydantic_ai import ModelRequest as PydanticAIRequest
    from pydantic_ai import ModelResponse as PydanticAIResponse
    from pydantic_ai.agent import AbstractAgent
    from pydantic_ai.exceptions import (
        AgentRunError,
        ConcurrencyLimitExceeded,
        ContentFilterError,
        FallbackExceptionGroup,
        ModelAPIError,
        ModelConnectionError,
        ModelHTTPError,
        ModelRateLimitError,
        ModelServerError,
        ModelUnavailableError,
        RunCancelled,
        RunTimedOut,
        UnexpectedModelBehavior,
        UsageLimitExceeded,
    )
    from pydantic_ai.messages import (
        ModelRequestPart,
        ModelResponsePart,
        UserContent,
        WebCitationSource,
    )
    from pydantic_ai.tools import DeferredToolRequests
except ImportError as exc:  # without the extra, or with a pydantic-ai too old for this module
    raise ImportError(
        "chatkeep.providers.pydantic_ai needs pydantic-ai-slim 2.61 or newer (it is missing or too old): "
        "pip install -U 'chatkeep[pydantic-ai]'"
    ) from exc

from chatkeep.providers.base import (
    FilePart,
    Finish,
    FinishReason,
    ModelError,
    ModelEvent,
    ModelMessage,
    ModelRequest,
    ReasoningContent,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    Source,
    TextContent,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolCallContent,
    ToolInputDelta,
    ToolInputStart,
    ToolResult,
    ToolResultContent,
    Usage,
)

__all__ = ["PydanticAIModel", "to_pydantic_ai"]

log = logging.getLogger("chatkeep.providers.pydantic_ai")

_FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    # the agent's last response called its output tool: for chatkeep the run is complete
    "tool_call": "stop",
    "error": "error",
}

_SETTINGS: Final[Mapping[str, str]] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "topP": "top_p",
    "max_tokens": "max_tokens",
    "maxTokens": "max_tokens",
    "maxOutputTokens": "max_tokens",
    "seed": "seed",
    "stop": "stop_sequences",
    "stopSequences": "stop_sequences",
    "presence_penalty": "presence_penalty",
    "presencePenalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "frequencyPenalty": "frequency_penalty",
    "parallel_tool_calls": "parallel_tool_calls",
}

_UNANSWERED: Final = "The agent ended without a result for this tool call."
_INTERRUPTED: Final = "The tool call was interrupted by an error."
_DEFERRED: Final = (
    "The agent deferred this tool call (approval or external execution), which chatkeep does not support."
)

#: JSON for tool return values (pydantic models, dataclasses, dates, bytes as base64), as pydantic-ai dumps them.
_JSON: Final = TypeAdapter[Any](Any, config=ConfigDict(ser_json_bytes="base64"))


class PydanticAIModel:
    """A :class:`~chatkeep.providers.base.Model` that runs a Pydantic AI agent; see the module docstring.

    ``deps`` is passed to every run (for agents declared with ``deps_type``). ``name`` defaults to
    ``pydantic-ai:<agent name>`` (``pydantic-ai`` for an unnamed agent).
    """

    def __init__(self, agent: AbstractAgent[Any, Any], *, name: str | None = None, deps: Any = None) -> None:
        self._agent = agent
        self._deps = deps
        self._name = name or (f"pydantic-ai:{agent.name}" if agent.name else "pydantic-ai")

    @property
    def name(self) -> str:
        return self._name

    @property
    def agent(self) -> AbstractAgent[Any, Any]:
        return self._agent

    def __repr__(self) -> str:
        return f"PydanticAIModel({self._agent!r})"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Run the agent once on the conversation; see the module docstring for the events and the errors."""
        history, prompt = to_pydantic_ai(request.messages)
        settings = _model_settings(request.settings)
        stream = _EventStream()
        try:
            async with self._agent.run_stream_events(
                prompt,
                message_history=history,
                deps=self._deps,
                model_settings=settings,
                infer_name=False,
            ) as events:
                async for event in events:
                    for out in stream.feed(event):
                        yield out
        except (AgentRunError, FallbackExceptionGroup) as exc:
            log.warning("the pydantic-ai agent run failed: %s", exc, exc_info=exc)
            for out in stream.close(_INTERRUPTED):
                yield out
            raise _model_error(exc) from exc
        except Exception:
            for out in stream.close(_INTERRUPTED):
                yield out
            raise
        for out in stream.close(_DEFERRED if stream.deferred else _UNANSWERED):
            yield out
        yield stream.finish()


# -- the conversation ---------------------------------------------------------------------------------------------


def to_pydantic_ai(messages: Sequence[ModelMessage]) -> tuple[list[PydanticAIMessage], str | list[UserContent] | None]:
    """chatkeep's conversation as pydantic-ai ``(message_history, user_prompt)``.

    The prompt is the content of the last message when it is the user's (``None`` otherwise); the history is
    everything before it. Consecutive request parts (system, user, tool returns) share one ``ModelRequest``.
    """
    body = list(messages)
    prompt: str | list[UserContent] | None = None
    if body and body[-1].role == "user":
        prompt = _prompt(_user_content(body.pop()))
    history: list[PydanticAIMessage] = []
    pending: list[ModelRequestPart] = []
    index = 0
    while index < len(body):
        message = body[index]
        index += 1
        if message.role == "system":
            text = "\n\n".join(part.text for part in message.content if isinstance(part, TextContent))
            pending.append(SystemPromptPart(text))
        elif message.role == "user":
            pending.append(UserPromptPart(_prompt(_user_content(message))))
        elif message.role == "assistant":
            results: dict[str, ToolResultContent] = {}
            if index < len(body) and body[index].role == "tool":
                results = {r.tool_call_id: r for r in body[index].content if isinstance(r, ToolResultContent)}
                index += 1
            steps, returns = _assistant(message, results)
            if steps:
                if pending:
                    history.append(PydanticAIRequest(parts=pending))
                history.extend(steps)
                pending = returns
        # a tool message not right after an assistant message answers nothing that is sent: it is dropped
    if pending:
        history.append(PydanticAIRequest(parts=pending))
    return history, prompt


def _assistant(
    message: ModelMessage, results: Mapping[str, ToolResultContent]
) -> tuple[list[PydanticAIMessage], list[ModelRequestPart]]:
    """An assistant message as pydantic-ai responses, split after each batch of answered tool calls.

    Returns the messages and the tool returns answering the last response (the start of the next request).
    """
    out: list[PydanticAIMessage] = []
    parts: list[ModelResponsePart] = []
    returns: list[ModelRequestPart] = []
    for content in message.content:
        if isinstance(content, ToolCallContent):
            result = results.get(content.tool_call_id)
            if result is None:  # pydantic-ai refuses a history with unanswered calls
                continue
            parts.append(ToolCallPart(content.tool_name, _call_args(content.input), content.tool_call_id))
            returns.append(
                ToolReturnPart(
                    content.tool_name,
                    str(result.output) if result.is_error else result.output,
                    content.tool_call_id,
                    outcome="failed" if result.is_error else "success",
                )
            )
            continue
        if returns:  # what follows the tool calls is the agent's next step, made after it saw their results
            out.append(PydanticAIResponse(parts=parts))
            out.append(PydanticAIRequest(parts=returns))
            parts, returns = [], []
        if isinstance(content, TextContent):
            parts.append(TextPart(content.text))
        elif isinstance(content, ReasoningContent):
            parts.append(ThinkingPart(content.text))
    if parts:
        out.append(PydanticAIResponse(parts=parts))
    return out, returns


def _call_args(value: Any) -> str | dict[str, Any] | None:
    if value is None or isinstance(value, str | dict):
        return cast("str | dict[str, Any] | None", value)
    return json.dumps(value)


def _user_content(message: ModelMessage) -> list[UserContent]:
    content: list[UserContent] = []
    for part in message.content:
        if isinstance(part, TextContent):
            content.append(part.text)
        elif isinstance(part, FilePart):
            content.append(_file(part))
    return content


def _prompt(content: list[UserContent]) -> str | list[UserContent]:
    if not content:
        return ""
    if len(content) == 1 and isinstance(content[0], str):
        return content[0]
    return content


def _file(part: FilePart) -> UserContent:
    media_type = part.media_type.lower()
    if part.url.startswith("data:"):
        data = _data_url_bytes(part.url)
        if data is not None:
            return BinaryContent.narrow_type(BinaryContent(data, media_type=media_type, identifier=part.filename))
    elif urllib.parse.urlsplit(part.url).scheme in ("http", "https"):
        if media_type.startswith("image/"):
            return ImageUrl(part.url, media_type=media_type, identifier=part.filename)
        if media_type.startswith("audio/"):
            return AudioUrl(part.url, media_type=media_type, identifier=part.filename)
        if media_type.startswith("video/"):
            return VideoUrl(part.url, media_type=media_type, identifier=part.filename)
        return DocumentUrl(part.url, media_type=media_type, identifier=part.filename)
    label = f"{part.filename} ({part.media_type})" if part.filename else part.media_type
    return f"[Attached file {label}; its content could not be sent to the model]"


def _data_url_bytes(url: str) -> bytes | None:
    """The payload of a ``data:`` URL, or ``None`` when it is not a well-formed one."""
    meta, comma, payload = url[5:].partition(",")
    if not comma:
        return None
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
    return urllib.parse.unquote_to_bytes(payload)


def _model_settings(settings: Mapping[str, Any]) -> ModelSettings | None:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        target = _SETTINGS.get(key)
        if target is None or value is None:
            continue
        out[target] = [value] if target == "stop_sequences" and isinstance(value, str) else value
    return cast(ModelSettings, out) if out else None


# -- the events ---------------------------------------------------------------------------------------------------


@dataclass
class _OpenPart:
    """A pydantic-ai part being streamed: its kind, its chatkeep id, and (tool calls) the part so far."""

    kind: Literal["text", "reasoning", "tool"]
    id: str
    call: ToolCallPart[Any] | NativeToolCallPart[Any] | None = None


@dataclass
class _EventStream:
    """Turns the events of one agent run into chatkeep events (``feed``), then ``close`` and ``finish``."""

    open: dict[int, _OpenPart] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"txt": 0, "rsn": 0})
    #: pydantic-ai tool call id → the id chatkeep knows the call by (they differ only when a model repeats one)
    call_ids: dict[str, str] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)
    #: calls announced with a ToolCall and not answered yet, by chatkeep id → tool name
    unanswered: dict[str, str] = field(default_factory=dict)
    #: calls whose input is streaming (ToolInputStart sent, no ToolCall yet), by chatkeep id
    streaming: dict[str, ToolCallPart[Any] | NativeToolCallPart[Any]] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    result: AgentRunResultEvent[Any] | None = None

    @property
    def deferred(self) -> bool:
        return self.result is not None and isinstance(self.result.result.output, DeferredToolRequests)

    def feed(self, event: AgentStreamEvent | AgentRunResultEvent[Any]) -> Iterator[ModelEvent]:
        if isinstance(event, PartStartEvent):
            yield from self._start(event)
        elif isinstance(event, PartDeltaEvent):
            yield from self._delta(event)
        elif isinstance(event, PartEndEvent):
            yield from self._end(event.index, event.part)
        elif isinstance(event, FunctionToolCallEvent | OutputToolCallEvent):
            yield from self._called(event.part)
        elif isinstance(event, FunctionToolResultEvent | OutputToolResultEvent):
            yield from self._result(event.part)
        elif isinstance(event, AgentRunResultEvent):
            self.result = event
        # other events (final-result markers, enqueued messages, capability and custom events) carry nothing
        # chatkeep shows

    def close(self, error: str) -> Iterator[ModelEvent]:
        """Close every open part, and answer every call left without a result with ``error``."""
        for index in list(self.open):
            yield from self._end(index, None)
        for call_id, call in list(self.streaming.items()):
            yield from self._announce(call_id, call.tool_name, _call_input(call))
        for call_id in list(self.unanswered):
            del self.unanswered[call_id]
            yield ToolResult(call_id, error, is_error=True)

    def finish(self) -> Finish:
        if self.result is None:  # pragma: no cover - pydantic-ai always ends a completed run with its result
            return Finish("other")
        run = self.result.result
        reason = _FINISH_REASONS.get(run.response.finish_reason or "stop", "other")
        if self.deferred:
            reason = "other"
        usage = run.usage
        return Finish(reason, Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens))

    # -- parts --

    def _start(self, event: PartStartEvent) -> Iterator[ModelEvent]:
        if event.index in self.open:
            yield from self._end(event.index, None)
        part = event.part
        if isinstance(part, TextPart):
            text_id = self._next("txt")
            self.open[event.index] = _OpenPart("text", text_id)
            yield TextStart(text_id)
            if part.content:
                yield TextDelta(text_id, part.content)
        elif isinstance(part, ThinkingPart):
            reasoning_id = self._next("rsn")
            self.open[event.index] = _OpenPart("reasoning", reasoning_id)
            yield ReasoningStart(reasoning_id)
            if part.content:
                yield ReasoningDelta(reasoning_id, part.content)
        elif isinstance(part, ToolCallPart | NativeToolCallPart):
            call_id = self._new_call_id(part.tool_call_id)
            self.open[event.index] = _OpenPart("tool", call_id, part)
            self.streaming[call_id] = part
            yield ToolInputStart(call_id, part.tool_name)
            if part.args:
                yield ToolInputDelta(call_id, part.args if isinstance(part.args, str) else json.dumps(part.args))
        elif isinstance(part, NativeToolReturnPart):  # a built-in tool's result: the whole part, no end event
            yield from self._result(part)

    def _delta(self, event: PartDeltaEvent) -> Iterator[ModelEvent]:
        delta = event.delta
        current = self.open.get(event.index)
        if isinstance(delta, TextPartDelta):
            if current is not None and current.kind == "text" and delta.content_delta:
                yield TextDelta(current.id, delta.content_delta)
            # citations can come in a delta of their own, even after the part's end
            for citation in delta.citations_delta or ():
                yield from self._sources(citation.sources)
        elif isinstance(delta, ThinkingPartDelta):
            if current is not None and current.kind == "reasoning" and delta.content_delta:
                yield ReasoningDelta(current.id, delta.content_delta)
        elif isinstance(delta, ToolCallPartDelta):
            if current is None or current.kind != "tool" or current.call is None:
                return
            current.call = delta.apply(current.call)
            self.streaming[current.id] = current.call
            if isinstance(delta.args_delta, str) and delta.args_delta:
                yield ToolInputDelta(current.id, delta.args_delta)
            elif isinstance(delta.args_delta, dict) and delta.args_delta:
                yield ToolInputDelta(current.id, json.dumps(delta.args_delta))

    def _end(self, index: int, part: object | None) -> Iterator[ModelEvent]:
        """End the part at ``index`` (``part`` is the complete part, or ``None`` when the stream stopped)."""
        current = self.open.pop(index, None)
        if current is None:
            return
        if current.kind == "text":
            yield TextEnd(current.id)
            if isinstance(part, TextPart):
                for citation in part.citations or ():
                    yield from self._sources(citation.sources)
        elif current.kind == "reasoning":
            yield ReasoningEnd(current.id)
        else:
            call = part if isinstance(part, ToolCallPart | NativeToolCallPart) else current.call
            if call is None:  # pragma: no cover - a tool part always has its call
                return
            # results name the call by its final id, which a provider may send after the part started
            self.call_ids[call.tool_call_id] = current.id
            yield from self._announce(current.id, call.tool_name, _call_input(call))

    def _sources(self, sources: Iterable[object]) -> Iterator[ModelEvent]:
        for source in sources:
            if isinstance(source, WebCitationSource) and source.url not in self.sources:
                self.sources.add(source.url)
                yield Source(source.url, source.url, source.title)

    # -- tool calls --

    def _announce(self, call_id: str, tool_name: str, call_input: Any) -> Iterator[ModelEvent]:
        """The ``ToolCall`` of a call whose input is complete."""
        self.streaming.pop(call_id, None)
        self.unanswered[call_id] = tool_name
        yield ToolCall(call_id, tool_name, call_input, provider_executed=True)

    def _called(self, part: ToolCallPart[Any]) -> Iterator[ModelEvent]:
        """The agent is about to run the call of ``part``: announce it if its part did not end yet."""
        call_id = self.call_ids.get(part.tool_call_id)
        if call_id is None:
            yield from self._announce(self._new_call_id(part.tool_call_id), part.tool_name, _call_input(part))
        elif call_id in self.streaming:
            yield from self._announce(call_id, part.tool_name, _call_input(part))

    def _result(self, part: ToolReturnPart[Any] | NativeToolReturnPart[Any]) -> Iterator[ModelEvent]:
        call_id = self.call_ids.get(part.tool_call_id)
        if call_id is None:  # a result for a call never seen: announce the call first, with no input
            call_id = self._new_call_id(part.tool_call_id)
            yield from self._announce(call_id, part.tool_name, {})
        elif call_id in self.streaming:
            call = self.streaming[call_id]
            yield from self._announce(call_id, call.tool_name, _call_input(call))
        if self.unanswered.pop(call_id, None) is None:  # answered already
            return
        if part.outcome == "success":
            yield ToolResult(call_id, _json(part.content))
        else:
            yield ToolResult(call_id, _error_text(part), is_error=True)

    def _new_call_id(self, tool_call_id: str) -> str:
        call_id = tool_call_id
        n = 1
        while call_id in self.used_ids:
            n += 1
            call_id = f"{tool_call_id}-{n}"
        self.used_ids.add(call_id)
        self.call_ids[tool_call_id] = call_id
        return call_id

    def _next(self, prefix: str) -> str:
        n = self.counts[prefix]
        self.counts[prefix] = n + 1
        return f"{prefix}-{n}"


def _call_input(part: ToolCallPart[Any] | NativeToolCallPart[Any]) -> Any:
    """The call's arguments as JSON; arguments that are not a JSON object stay the raw text the model sent."""
    try:
        return part.args_as_dict(raise_if_invalid=True)
    except (ValueError, AssertionError):
        return part.args


def _json(value: Any) -> Any:
    try:
        return _JSON.dump_python(value, mode="json")
    except Exception:  # a return value pydantic cannot serialize: its text
        return str(value)


def _error_text(part: ToolReturnPart[Any] | NativeToolReturnPart[Any]) -> str:
    """Readable text for a failed, retried, denied or interrupted tool call."""
    content = part.content
    if isinstance(content, list) and content and all(isinstance(e, dict) and "msg" in e for e in content):
        # validation errors of the arguments (pydantic ErrorDetails)
        issues = []
        for error in cast(list[dict[str, Any]], content):
            where = ".".join(str(loc) for loc in error.get("loc", ()))
            issues.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
        return "Invalid arguments: " + "; ".join(issues)
    text = part.model_response_str(wrap_if_error=False)
    return text or f"The tool call {part.outcome}."


def _model_error(exc: AgentRunError | FallbackExceptionGroup) -> ModelError:
    """The one place pydantic-ai's errors become :class:`ModelError`; messages never include response bodies."""
    if isinstance(exc, FallbackExceptionGroup):
        return ModelError("every model of the agent failed", retryable=True)
    if isinstance(exc, ModelHTTPError):
        status = exc.status_code
        return ModelError(
            f"the model server answered with HTTP status {status}",
            status=status,
            retryable=status in (408, 429) or status >= 500,
        )
    if isinstance(exc, ModelConnectionError):
        return ModelError("could not connect to the model server", retryable=True)
    if isinstance(exc, ModelRateLimitError | ModelUnavailableError | ModelServerError):
        return ModelError("the model server is unavailable or rate limited", retryable=True)
    if isinstance(exc, ModelAPIError):
        return ModelError("the model request failed")
    if isinstance(exc, ContentFilterError):
        return ModelError("the model provider's content filter stopped the response")
    if isinstance(exc, UnexpectedModelBehavior):
        return ModelError("the model sent an unexpected response")
    if isinstance(exc, UsageLimitExceeded):
        return ModelError("the agent reached its usage limit")
    if isinstance(exc, RunTimedOut):
        return ModelError("the agent run timed out", retryable=True)
    if isinstance(exc, RunCancelled):
        return ModelError("the agent run was cancelled")
    if isinstance(exc, ConcurrencyLimitExceeded):
        return ModelError("the agent is busy", retryable=True)
    return ModelError("the agent run failed")
