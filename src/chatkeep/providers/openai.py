"""``openai:<model>``: any OpenAI-compatible **Chat Completions** server, through the official ``openai`` SDK.

Works with OpenAI itself and with servers that speak the same API (vLLM, llama.cpp, Ollama, LM Studio,
DeepSeek, OpenRouter, …). One :meth:`OpenAIChatModel.stream` call is one streamed
``POST {base_url}/chat/completions`` (``stream=True``, ``stream_options={"include_usage": True}``).

What this module guarantees:

* the events obey the rules of :mod:`chatkeep.providers.base`: reasoning and text arrive as
  ``*Start``/``*Delta``/``*End`` runs (ids ``rsn-0``, ``txt-0``, ``txt-1``, … one per contiguous run); every
  open run is closed before the first tool-call event and before the end; tool calls stream as
  ``ToolInputStart`` + one ``ToolInputDelta`` per argument fragment and are completed, in ``index`` order, by
  one ``ToolCall`` each once the server has finished; the last event is exactly one ``Finish`` (reason
  ``"stop"``, or ``"tool-calls"`` when tool calls were seen, if the server sent none);
* every failure of the SDK (HTTP status, connection, timeout, error event inside the stream, malformed
  response) is raised as one :class:`~chatkeep.providers.base.ModelError` whose message is safe to show to
  end users: it never contains the API key or the base URL;
* while :data:`ALLOW_MODEL_REQUESTS` is ``False`` nothing is sent to a host that is not a loopback address, and
  the refusal happens before any network I/O.

How the conversation is sent (the Chat Completions message format):

* ``system`` → one system message whose content is the texts joined by blank lines;
* ``user`` → a string when it is a single text, otherwise content parts: text → ``text``; ``image/*`` files →
  ``image_url`` (the hosted URL or the ``data:`` URL, as given); PDF ``data:`` URLs → a ``file`` part
  (``filename`` + ``file_data``, the one file form Chat Completions accepts inline); ``text/*`` and JSON
  ``data:`` URLs → their decoded text in a ``text`` part; any other file → a short ``text`` note naming it (and
  its URL when it is hosted), because Chat Completions has no way to pass it;
* ``assistant`` → its text (``None`` when there is none) and ``tool_calls`` with JSON-encoded arguments; reasoning
  is not sent back;
* tool results → one ``tool`` message per result: a string output is sent as it is, any other output as JSON,
  an error as its text.

Reasoning is read from ``delta.reasoning_content`` (DeepSeek, vLLM, llama.cpp) or ``delta.reasoning``
(OpenRouter, Ollama, newer vLLM): the SDK does not declare these fields, so they are read from the delta's
extra fields. Tool-call arguments that are not valid JSON do not fail the step: the ``ToolCall`` then carries
the raw argument string as its ``input`` and the chat loop reports it to the model like any bad input.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionContentPartParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall

from chatkeep.providers.base import (
    FilePart,
    Finish,
    FinishReason,
    ModelError,
    ModelEvent,
    ModelMessage,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    TextContent,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolCallContent,
    ToolInputDelta,
    ToolInputStart,
    ToolResultContent,
    ToolSpec,
    Usage,
)

__all__ = ["ALLOW_MODEL_REQUESTS", "PLACEHOLDER_API_KEY", "OpenAIChatModel"]

#: When ``False``, :meth:`OpenAIChatModel.stream` refuses (with :class:`ModelError`) to contact any host that is
#: not a loopback address. Test suites set it to ``False`` so that they can never reach the internet.
ALLOW_MODEL_REQUESTS: bool = True

#: Sent as the bearer token when no key is configured anywhere: local servers accept any key, while the SDK
#: refuses to start without one. OpenAI itself answers it with a clear 401.
PLACEHOLDER_API_KEY: Final = "no-api-key"

#: ``ModelRequest.settings`` keys that are sent, mapped to the Chat Completions parameter they become. Both the
#: OpenAI names and the AI SDK call-setting names are accepted; any other key (and any ``None`` value) is ignored.
_SETTINGS: Final[Mapping[str, str]] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "topP": "top_p",
    "max_tokens": "max_tokens",
    "maxTokens": "max_tokens",
    "maxOutputTokens": "max_tokens",
    "max_completion_tokens": "max_completion_tokens",
    "seed": "seed",
    "stop": "stop",
    "stopSequences": "stop",
    "presence_penalty": "presence_penalty",
    "presencePenalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "frequencyPenalty": "frequency_penalty",
    "logit_bias": "logit_bias",
    "parallel_tool_calls": "parallel_tool_calls",
    "tool_choice": "tool_choice",
    "response_format": "response_format",
    "reasoning_effort": "reasoning_effort",
    "verbosity": "verbosity",
    "service_tier": "service_tier",
    "user": "user",
}

#: Settings that the SDK has no parameter for but common OpenAI-compatible servers accept; sent in the body as is.
_EXTRA_BODY_SETTINGS: Final[Mapping[str, str]] = {"top_k": "top_k", "topK": "top_k", "min_p": "min_p"}

_FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}

#: The delta fields OpenAI-compatible servers use for reasoning text, in order of preference.
_REASONING_FIELDS: Final = ("reasoning_content", "reasoning")

_TEXT_FILE_TYPES: Final = frozenset({"application/json", "application/xml", "application/x-yaml", "application/yaml"})


class OpenAIChatModel:
    """A :class:`~chatkeep.providers.base.Model` backed by an OpenAI-compatible Chat Completions server.

    ``api_key`` and ``base_url`` default to ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` (then to OpenAI itself);
    without any key, :data:`PLACEHOLDER_API_KEY` is sent so that local servers needing none still work. Pass
    ``client`` to use an ``AsyncOpenAI`` you configured yourself; it is then yours to close, while a client this
    class creates is closed by :meth:`aclose` (or ``async with``). The SDK retries 408/409/429/5xx and connection
    errors ``max_retries`` times itself; what still fails surfaces as a :class:`ModelError`.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncOpenAI | None = None,
        timeout: float = 60,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self._owns_client = client is None
        if client is None:
            client = AsyncOpenAI(
                api_key=api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY,
                base_url=base_url or None,
                timeout=timeout,
                max_retries=max_retries,
            )
        self._client = client

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def client(self) -> AsyncOpenAI:
        """The SDK client requests go through."""
        return self._client

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r})"

    async def aclose(self) -> None:
        """Close the HTTP connections of the client this model created (a client passed in is left open)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Run one Chat Completions step; see the module docstring for the events and the error guarantees.

        Stopping the iteration early (``aclose``) closes the HTTP response.
        """
        host = self._client.base_url.host
        if not ALLOW_MODEL_REQUESTS and not _is_loopback(host):
            raise ModelError("model requests are disabled")
        messages = _chat_messages(request.messages)
        tools = [_tool_param(spec) for spec in request.tools]
        options, extra_body = _request_options(request.settings)
        if tools:
            options["tools"] = tools
        if extra_body:
            options["extra_body"] = extra_body
        state = _StreamState()
        answering = False
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **options,
            )
            answering = True
            async with chunks:
                async for chunk in chunks:
                    for event in state.feed(chunk):
                        yield event
        except openai.OpenAIError as exc:
            if answering and type(exc) is openai.APIConnectionError:  # not a timeout: the connection was lost
                raise ModelError("the model server closed the connection mid-answer", retryable=True) from exc
            raise _model_error(exc, secret=self._client.api_key) from exc
        for event in state.finish():
            yield event


# -- the request ------------------------------------------------------------------------------------------------


def _chat_messages(messages: Sequence[ModelMessage]) -> list[ChatCompletionMessageParam]:
    """The conversation as Chat Completions messages (see the module docstring for the mapping).

    Tool results become ``tool`` messages wherever they appear, right after the message that held them; a
    message with nothing left to send (an assistant turn of reasoning only) is dropped.
    """
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        texts = [part.text for part in message.content if isinstance(part, TextContent)]
        if message.role == "system":
            out.append(ChatCompletionSystemMessageParam(role="system", content="\n\n".join(texts)))
        elif message.role == "user":
            user = _user_message(message)
            if user is not None:
                out.append(user)
        elif message.role == "assistant":
            calls = [part for part in message.content if isinstance(part, ToolCallContent)]
            if texts or calls:
                assistant = ChatCompletionAssistantMessageParam(role="assistant", content="".join(texts) or None)
                if calls:
                    assistant["tool_calls"] = [_tool_call_param(call) for call in calls]
                out.append(assistant)
        out.extend(_tool_message(part) for part in message.content if isinstance(part, ToolResultContent))
    return out


def _user_message(message: ModelMessage) -> ChatCompletionUserMessageParam | None:
    parts: list[ChatCompletionContentPartParam] = []
    for part in message.content:
        if isinstance(part, TextContent):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, FilePart):
            parts.append(_file_content(part))
    if not parts:
        return None
    first = parts[0]
    if len(parts) == 1 and first["type"] == "text":
        return ChatCompletionUserMessageParam(role="user", content=first["text"])
    return ChatCompletionUserMessageParam(role="user", content=parts)


def _file_content(part: FilePart) -> ChatCompletionContentPartParam:
    media_type = part.media_type.lower()
    if media_type.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": part.url}}
    data = _data_url_bytes(part.url)
    if data is not None and media_type == "application/pdf":
        return {"type": "file", "file": {"filename": part.filename or "document.pdf", "file_data": part.url}}
    if data is not None and (media_type.startswith("text/") or media_type in _TEXT_FILE_TYPES):
        header = f"[File: {part.filename}]" if part.filename else f"[File ({part.media_type})]"
        return {"type": "text", "text": f"{header}\n{data.decode('utf-8', errors='replace')}"}
    label = f"{part.filename} ({part.media_type})" if part.filename else part.media_type
    where = f" at {part.url}" if part.url.startswith(("http://", "https://")) else ""
    return {"type": "text", "text": f"[Attached file {label}{where}; its content could not be sent to the model]"}


def _data_url_bytes(url: str) -> bytes | None:
    """The payload of a ``data:`` URL, or ``None`` when ``url`` is not a (well-formed) data URL."""
    if not url.startswith("data:") or "," not in url:
        return None
    meta, _, payload = url[5:].partition(",")
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
    return urllib.parse.unquote_to_bytes(payload)


def _tool_call_param(call: ToolCallContent) -> ChatCompletionMessageFunctionToolCallParam:
    # a string input is the raw text of arguments that were not valid JSON: send it back exactly as received
    arguments = call.input if isinstance(call.input, str) else json.dumps(call.input, ensure_ascii=False)
    return {"id": call.tool_call_id, "type": "function", "function": {"name": call.tool_name, "arguments": arguments}}


def _tool_message(result: ToolResultContent) -> ChatCompletionToolMessageParam:
    output = result.output
    content = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return {"role": "tool", "tool_call_id": result.tool_call_id, "content": content}


def _tool_param(spec: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": dict(spec.input_schema)},
    }


def _request_options(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whitelisted settings: SDK keyword arguments, and extra body fields."""
    options: dict[str, Any] = {}
    extra_body: dict[str, Any] = {}
    for key, value in settings.items():
        if value is None:
            continue
        if key in _SETTINGS:
            options[_SETTINGS[key]] = value
        elif key in _EXTRA_BODY_SETTINGS:
            extra_body[_EXTRA_BODY_SETTINGS[key]] = value
    return options, extra_body


# -- the response -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingToolCall:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    started: bool = False


class _StreamState:
    """Turns ``chat.completion.chunk`` objects into model events; one instance per step.

    Invariant: at most one of ``_text_id``/``_reasoning_id`` is open at a time, and both are closed once a tool
    call has started or :meth:`finish` runs.
    """

    def __init__(self) -> None:
        self._text_id: str | None = None
        self._reasoning_id: str | None = None
        self._texts = 0
        self._reasonings = 0
        self._tool_calls: dict[int, _PendingToolCall] = {}
        self._finish_reason: str | None = None
        self._usage = Usage()

    def feed(self, chunk: ChatCompletionChunk) -> Iterator[ModelEvent]:
        if chunk.usage is not None:
            self._usage = Usage(input_tokens=chunk.usage.prompt_tokens, output_tokens=chunk.usage.completion_tokens)
        # The SDK does not validate chunks, and some servers leave out fields its types declare (``choices`` on the
        # usage chunk, ``delta`` beside a finish reason, a tool call's ``index``): read those with a default.
        for choice in getattr(chunk, "choices", None) or ():
            if getattr(choice, "index", 0) != 0:  # we never ask for n > 1
                continue
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
            delta: ChoiceDelta | None = getattr(choice, "delta", None)
            if delta is not None:
                yield from self._delta(delta)

    def finish(self) -> Iterator[ModelEvent]:
        yield from self._close_runs()
        for pending in sorted(self._tool_calls.values(), key=lambda call: call.index):
            yield from self._start_tool_call(pending)
            if not pending.started:
                raise ModelError("the model server sent a tool call without a name")
            assert pending.id is not None and pending.name is not None
            yield ToolCall(tool_call_id=pending.id, tool_name=pending.name, input=_parse_arguments(pending.arguments))
        if self._finish_reason is None:
            reason: FinishReason = "tool-calls" if self._tool_calls else "stop"
        else:
            reason = _FINISH_REASONS.get(self._finish_reason, "other")
        yield Finish(reason=reason, usage=self._usage)

    def _delta(self, delta: ChoiceDelta) -> Iterator[ModelEvent]:
        reasoning = _reasoning_text(delta)
        if reasoning:
            if self._reasoning_id is None:
                yield from self._close_runs()
                self._reasoning_id = f"rsn-{self._reasonings}"
                self._reasonings += 1
                yield ReasoningStart(self._reasoning_id)
            yield ReasoningDelta(self._reasoning_id, reasoning)
        # a refusal is the model's answer to the user: shown like text
        for text in (delta.content, delta.refusal):
            if text:
                if self._text_id is None:
                    yield from self._close_runs()
                    self._text_id = f"txt-{self._texts}"
                    self._texts += 1
                    yield TextStart(self._text_id)
                yield TextDelta(self._text_id, text)
        for call in delta.tool_calls or ():
            yield from self._tool_call_delta(call)

    def _tool_call_delta(self, call: ChoiceDeltaToolCall) -> Iterator[ModelEvent]:
        yield from self._close_runs()
        index = getattr(call, "index", None)
        if not isinstance(index, int):  # no index: an id starts a new call, anything else continues the last one
            index = max(self._tool_calls, default=-1) + 1 if call.id or not self._tool_calls else max(self._tool_calls)
        pending = self._tool_calls.get(index)
        if pending is None:
            pending = self._tool_calls[index] = _PendingToolCall(index)
        if call.id:
            pending.id = pending.id or call.id
        fragment = ""
        if call.function is not None:
            if call.function.name:
                pending.name = pending.name or call.function.name
            fragment = call.function.arguments or ""
        pending.arguments += fragment
        was_started = pending.started
        yield from self._start_tool_call(pending)
        if was_started and fragment:
            yield ToolInputDelta(pending.id or "", fragment)

    def _start_tool_call(self, pending: _PendingToolCall) -> Iterator[ModelEvent]:
        """Announce the call once its name is known, with the arguments received so far."""
        if pending.started or pending.name is None:
            return
        if pending.id is None:  # a few servers omit ids; the chat loop needs one to pair the result
            pending.id = f"call_{pending.index}"
        pending.started = True
        yield ToolInputStart(tool_call_id=pending.id, tool_name=pending.name)
        if pending.arguments:
            yield ToolInputDelta(pending.id, pending.arguments)

    def _close_runs(self) -> Iterator[ModelEvent]:
        if self._reasoning_id is not None:
            yield ReasoningEnd(self._reasoning_id)
            self._reasoning_id = None
        if self._text_id is not None:
            yield TextEnd(self._text_id)
            self._text_id = None


def _reasoning_text(delta: ChoiceDelta) -> str | None:
    extra = delta.model_extra or {}
    for name in _REASONING_FIELDS:
        value = extra.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _parse_arguments(arguments: str) -> Any:
    """The parsed JSON arguments; no arguments at all is ``{}``; invalid JSON is returned as the raw string."""
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- errors -----------------------------------------------------------------------------------------------------

_STATUS_PHRASES: Final[Mapping[int, str]] = {
    400: "rejected the request",
    401: "refused the API key",
    403: "denied access",
    404: "does not know this model or endpoint",
    408: "timed out",
    413: "found the request too large",
    422: "could not process the request",
    429: "is rate limiting requests",
}


def _model_error(exc: openai.OpenAIError, *, secret: str) -> ModelError:
    """The one place SDK exceptions become :class:`ModelError`; messages never include the key or the URL."""
    if isinstance(exc, openai.APITimeoutError):
        return ModelError("the model server did not answer in time", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ModelError("could not connect to the model server", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        phrase = _STATUS_PHRASES.get(status, "failed" if status >= 500 else "refused the request")
        message = f"the model server {phrase} (HTTP {status})"
        detail = _error_detail(exc.body, secret)
        if detail:
            message = f"{message}: {detail}"
        return ModelError(message, status=status, retryable=status in (408, 429) or status >= 500)
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelError("the model server sent a malformed response")
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        detail = _error_detail(exc.body, secret) or _redact(exc.message, secret)
        return ModelError(f"the model server reported an error: {detail}")
    return ModelError("the model request failed")


def _error_detail(body: object, secret: str) -> str | None:
    """The server's own ``error.message`` (the SDK has already unwrapped ``{"error": …}``), if there is one."""
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, str) or not message.strip():
        return None
    return _redact(message.strip(), secret)


def _redact(text: str, secret: str, limit: int = 500) -> str:
    if len(secret) >= 8:
        text = text.replace(secret, "***")
    return text if len(text) <= limit else text[: limit - 1] + "…"
