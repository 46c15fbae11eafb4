"""A real, local OpenAI-compatible Chat Completions server for tests: no mock of the SDK is involved.

``FakeOpenAI`` runs a small Starlette app with uvicorn in a background thread, on ``127.0.0.1`` and a free port,
and answers ``POST /v1/chat/completions`` from a script of responses queued with :meth:`FakeOpenAI.enqueue`:

* a :class:`FakeResponse` is streamed as Server-Sent Events exactly as OpenAI does it: ``data: {chunk}\\n\\n`` lines
  of ``chat.completion.chunk`` objects (a first ``role`` delta, the content deltas, a delta-less chunk carrying
  ``finish_reason``, a final ``choices: []`` chunk with ``usage`` when the request asked for
  ``stream_options.include_usage``), then ``data: [DONE]\\n\\n``;
* a :class:`FakeError` is answered with its HTTP status and an OpenAI-style ``{"error": {...}}`` body.

Every request body is recorded, in order, in :attr:`FakeOpenAI.requests` (and its headers in
:attr:`FakeOpenAI.headers`), so tests can assert exactly what a client sent. A request arriving when the script
is empty gets a 500 whose message says so. :meth:`FakeOpenAI.env` points a ``chatkeep serve`` subprocess at it.
The server is a context manager::

    with FakeOpenAI() as server:
        server.enqueue(FakeResponse(text="Hello"))
        model = OpenAIChatModel("gpt-test", base_url=server.base_url)
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeError", "FakeOpenAI", "FakeResponse", "ToolCallScript"]

#: ``(tool_call_id, function_name, arguments_json_text)``
ToolCallScript = tuple[str, str, str]


class _Auto(Enum):
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class FakeResponse:
    """One streamed completion: reasoning first, then text, then tool calls, each cut into ``chunk_size`` pieces.

    ``finish_reason`` defaults to ``"tool_calls"`` when there are tool calls and ``"stop"`` otherwise; ``None``
    leaves it out. ``deltas``, when given, replaces everything generated from ``reasoning``/``text``/``tool_calls``
    (and the leading role delta) with these raw ``delta`` objects, one chunk each. ``interleave_tool_calls``
    sends every tool call's first chunk and then their argument fragments round-robin, as a server streaming
    parallel calls might. ``stream_error`` is sent as an in-stream ``{"error": …}`` event after the deltas, and
    ends the stream. ``cut``, when set, drops the connection after the deltas, mid-response (no ``finish_reason``,
    no ``[DONE]``, no end of the chunked body), as a server that crashes or a proxy that times out does.
    ``chunks``, when given, are sent verbatim instead of all of the above (then ``[DONE]``), for
    servers that stray from OpenAI's format. ``delay`` (seconds) is waited before the first chunk.
    """

    text: str = ""
    reasoning: str = ""
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    tool_calls: Sequence[ToolCallScript] = ()
    finish_reason: str | None | _Auto = _Auto.AUTO
    usage: tuple[int, int] = (11, 7)
    chunk_size: int = 4
    interleave_tool_calls: bool = False
    deltas: Sequence[Mapping[str, Any]] | None = None
    stream_error: Mapping[str, Any] | None = None
    chunks: Sequence[Mapping[str, Any]] | None = None
    delay: float = 0.0
    cut: bool = False

    def sse_events(self, *, model: str, include_usage: bool) -> list[str]:
        """The ``data:`` payloads of the stream, in order (JSON texts, then ``[DONE]``)."""
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
            body: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                body["usage"] = usage
            return json.dumps(body)

        def choice(delta: Mapping[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}]

        if self.chunks is not None:
            return [*(json.dumps(raw) for raw in self.chunks), "[DONE]"]
        events = [chunk(choice(delta)) for delta in (self.deltas if self.deltas is not None else self._deltas())]
        if self.stream_error is not None:
            return [*events, json.dumps({"error": dict(self.stream_error)})]
        if self.cut:
            return events
        if self.finish_reason is _Auto.AUTO:
            finish_reason: str | None = "tool_calls" if self.tool_calls else "stop"
        else:
            finish_reason = self.finish_reason
        if finish_reason is not None:
            events.append(chunk(choice({}, finish_reason)))
        if include_usage:
            prompt, completion = self.usage
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            events.append(chunk([], usage))
        return [*events, "[DONE]"]

    def _pieces(self, text: str) -> list[str]:
        size = max(self.chunk_size, 1)
        return [text[i : i + size] for i in range(0, len(text), size)]

    def _deltas(self) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{self.reasoning_field: piece} for piece in self._pieces(self.reasoning)]
        deltas += [{"content": piece} for piece in self._pieces(self.text)]
        heads = [
            {"index": i, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            for i, (call_id, name, _) in enumerate(self.tool_calls)
        ]
        fragments = [
            [{"index": i, "function": {"arguments": piece}} for piece in self._pieces(arguments)]
            for i, (_, _, arguments) in enumerate(self.tool_calls)
        ]
        if self.interleave_tool_calls:
            calls = list(heads)
            for row in range(max((len(f) for f in fragments), default=0)):
                calls += [f[row] for f in fragments if row < len(f)]
        else:
            calls = [call for head, frags in zip(heads, fragments, strict=True) for call in (head, *frags)]
        return deltas + [{"tool_calls": [call]} for call in calls]


@dataclass(frozen=True, slots=True)
class FakeError:
    """An error answer: ``body`` is sent as JSON (a ``str`` as plain text); by default an OpenAI error object."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, status_code=self.status, headers=dict(self.headers))
        body = self.body
        if body is None:
            body = {"error": {"message": f"fake error {self.status}", "type": "fake_error", "code": None}}
        return JSONResponse(body, status_code=self.status, headers=dict(self.headers))


class FakeOpenAI:
    """The server; see the module docstring. Safe to script from the test thread while it serves."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: collections.deque[FakeResponse | FakeError] = collections.deque()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the fake server is not running")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """The environment that points ``openai:<model>`` models at this server (for a ``chatkeep serve``
        subprocess: ``running_server(url, env=server.env(), args=["--model", "openai:test-model"])``)."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "sk-fake"}

    def enqueue(self, *responses: FakeResponse | FakeError) -> None:
        """Queue the answers to the next requests, in order."""
        with self._lock:
            self._script.extend(responses)

    def reset(self) -> None:
        """Forget recorded requests and any answers not yet given."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.headers.clear()

    def start(self) -> None:
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat_completions, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11")
        self._server = uvicorn.Server(config)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.001)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _chat_completions(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            script = self._script.popleft() if self._script else None
        if script is None:
            return FakeError(500, {"error": {"message": "fake server: no response enqueued"}}).response()
        if isinstance(script, FakeError):
            return script.response()
        if not body.get("stream"):
            return FakeError(400, {"error": {"message": "fake server: only streaming is supported"}}).response()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = script.sse_events(model=str(body.get("model")), include_usage=include_usage)

        async def stream() -> AsyncIterator[str]:
            if script.delay:
                await asyncio.sleep(script.delay)
            for event in events:
                yield f"data: {event}\n\n"
            if script.cut:
                # uvicorn drops the connection when the body's iterator fails, without ending the chunked body
                raise ConnectionAbortedError("fake server: the stream is cut here")

        return StreamingResponse(stream(), media_type="text/event-stream")
