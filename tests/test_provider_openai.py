"""``OpenAIChatModel`` through the real ``openai`` SDK against a real local server (:mod:`tests.fake_openai`).

Pins down: the exact event sequence for text, reasoning and (parallel, fragmented) tool calls; finish reasons and
usage; what is sent (the Chat Completions messages, tools and settings, read back from the server's record);
how failures become a :class:`ModelError` (status, retryable, a message without the key); and that
``ALLOW_MODEL_REQUESTS = False`` keeps every request off the network unless it goes to a loopback host.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any, Literal

import httpx2
import pytest
from openai import AsyncOpenAI

from chatkeep.providers import openai as openai_provider
from chatkeep.providers.base import (
    FilePart,
    Finish,
    FinishReason,
    Model,
    ModelError,
    ModelEvent,
    ModelMessage,
    ModelRequest,
    ReasoningContent,
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
from chatkeep.providers.openai import OpenAIChatModel
from tests.fake_openai import FakeError, FakeOpenAI, FakeResponse

API_KEY = "sk-test-0123456789abcdef"
HELLO = ModelRequest(messages=[ModelMessage("user", [TextContent("Hi")])])
USAGE = Usage(input_tokens=11, output_tokens=7)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_and_offline(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with an empty script, and with requests to anything but loopback refused."""
    server.reset()
    monkeypatch.setattr(openai_provider, "ALLOW_MODEL_REQUESTS", False)


@pytest.fixture
async def model(server: FakeOpenAI) -> AsyncIterator[OpenAIChatModel]:
    async with OpenAIChatModel("gpt-test", api_key=API_KEY, base_url=server.base_url, max_retries=0) as m:
        yield m


async def collect(model: Model, request: ModelRequest = HELLO) -> list[ModelEvent]:
    return [event async for event in model.stream(request)]


async def fail(model: Model, request: ModelRequest = HELLO) -> ModelError:
    with pytest.raises(ModelError) as info:
        await collect(model, request)
    return info.value


class TestEvents:
    async def test_text(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeResponse(text="Hello, world!", chunk_size=5))
        assert await collect(model) == [
            TextStart("txt-0"),
            TextDelta("txt-0", "Hello"),
            TextDelta("txt-0", ", wor"),
            TextDelta("txt-0", "ld!"),
            TextEnd("txt-0"),
            Finish("stop", USAGE),
        ]

    @pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
    async def test_reasoning_then_text(
        self, server: FakeOpenAI, model: OpenAIChatModel, field: Literal["reasoning_content", "reasoning"]
    ) -> None:
        server.enqueue(FakeResponse(reasoning="Think hard", text="42", reasoning_field=field, chunk_size=5))
        assert await collect(model) == [
            ReasoningStart("rsn-0"),
            ReasoningDelta("rsn-0", "Think"),
            ReasoningDelta("rsn-0", " hard"),
            ReasoningEnd("rsn-0"),
            TextStart("txt-0"),
            TextDelta("txt-0", "42"),
            TextEnd("txt-0"),
            Finish("stop", USAGE),
        ]

    async def test_one_run_per_contiguous_stretch(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        deltas = [{"role": "assistant", "content": ""}, {"content": "a"}, {"reasoning_content": "b"}, {"content": "c"}]
        server.enqueue(FakeResponse(deltas=deltas))
        assert await collect(model) == [
            TextStart("txt-0"),
            TextDelta("txt-0", "a"),
            TextEnd("txt-0"),
            ReasoningStart("rsn-0"),
            ReasoningDelta("rsn-0", "b"),
            ReasoningEnd("rsn-0"),
            TextStart("txt-1"),
            TextDelta("txt-1", "c"),
            TextEnd("txt-1"),
            Finish("stop", USAGE),
        ]

    async def test_text_then_tool_call(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(
            FakeResponse(text="Checking.", tool_calls=[("call_1", "get_weather", '{"city":"Paris"}')], chunk_size=9)
        )
        assert await collect(model) == [
            TextStart("txt-0"),
            TextDelta("txt-0", "Checking."),
            TextEnd("txt-0"),
            ToolInputStart("call_1", "get_weather"),
            ToolInputDelta("call_1", '{"city":"'),
            ToolInputDelta("call_1", 'Paris"}'),
            ToolCall("call_1", "get_weather", {"city": "Paris"}),
            Finish("tool-calls", USAGE),
        ]

    async def test_two_parallel_tool_calls_interleaved(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        calls = [("call_a", "get_weather", '{"city":"Paris"}'), ("call_b", "get_time", '{"tz":"CET"}')]
        server.enqueue(FakeResponse(tool_calls=calls, chunk_size=6, interleave_tool_calls=True))
        assert await collect(model) == [
            ToolInputStart("call_a", "get_weather"),
            ToolInputStart("call_b", "get_time"),
            ToolInputDelta("call_a", '{"city'),
            ToolInputDelta("call_b", '{"tz":'),
            ToolInputDelta("call_a", '":"Par'),
            ToolInputDelta("call_b", '"CET"}'),
            ToolInputDelta("call_a", 'is"}'),
            ToolCall("call_a", "get_weather", {"city": "Paris"}),
            ToolCall("call_b", "get_time", {"tz": "CET"}),
            Finish("tool-calls", USAGE),
        ]

    async def test_two_tool_calls_in_sequence(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        calls = [("call_a", "get_weather", '{"city":"Oslo"}'), ("call_b", "get_time", "{}")]
        server.enqueue(FakeResponse(tool_calls=calls, chunk_size=100))
        assert await collect(model) == [
            ToolInputStart("call_a", "get_weather"),
            ToolInputDelta("call_a", '{"city":"Oslo"}'),
            ToolInputStart("call_b", "get_time"),
            ToolInputDelta("call_b", "{}"),
            ToolCall("call_a", "get_weather", {"city": "Oslo"}),
            ToolCall("call_b", "get_time", {}),
            Finish("tool-calls", USAGE),
        ]

    @pytest.mark.parametrize(("arguments", "expected"), [("", {}), ("  ", {}), ('{"city": "Par', '{"city": "Par')])
    async def test_tool_call_input_empty_or_invalid(
        self, server: FakeOpenAI, model: OpenAIChatModel, arguments: str, expected: Any
    ) -> None:
        server.enqueue(FakeResponse(tool_calls=[("call_1", "get_weather", arguments)]))
        events = await collect(model)
        assert events[-2:] == [ToolCall("call_1", "get_weather", expected), Finish("tool-calls", USAGE)]

    async def test_tool_call_without_id_gets_one(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        deltas = [{"tool_calls": [{"index": 0, "function": {"name": "now", "arguments": "{}"}}]}]
        server.enqueue(FakeResponse(deltas=deltas, finish_reason=None))
        assert await collect(model) == [
            ToolInputStart("call_0", "now"),
            ToolInputDelta("call_0", "{}"),
            ToolCall("call_0", "now", {}),
            Finish("tool-calls", USAGE),
        ]

    async def test_tool_calls_without_index(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        """Some servers (Gemini's OpenAI layer) send whole calls without ``index``: an id starts a new call."""
        head_a = {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":'}}
        head_b = {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}
        deltas: list[dict[str, Any]] = [
            {"tool_calls": [head_a]},
            {"tool_calls": [{"function": {"arguments": "1}"}}, head_b]},
        ]
        server.enqueue(FakeResponse(deltas=deltas))
        assert await collect(model) == [
            ToolInputStart("call_a", "f"),
            ToolInputDelta("call_a", '{"x":'),
            ToolInputDelta("call_a", "1}"),
            ToolInputStart("call_b", "g"),
            ToolInputDelta("call_b", "{}"),
            ToolCall("call_a", "f", {"x": 1}),
            ToolCall("call_b", "g", {}),
            Finish("stop", USAGE),
        ]

    async def test_chunks_missing_choices_or_delta(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {**base, "choices": [{"index": 1, "delta": {"content": "other choice"}}]},
            {**base, "choices": [{"index": 0, "finish_reason": "length"}]},
            {**base, "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}},
        ]
        server.enqueue(FakeResponse(chunks=chunks))
        assert await collect(model) == [
            TextStart("txt-0"),
            TextDelta("txt-0", "Hi"),
            TextEnd("txt-0"),
            Finish("length", Usage(input_tokens=2, output_tokens=1)),
        ]

    async def test_tool_call_without_name_is_an_error(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeResponse(deltas=[{"tool_calls": [{"index": 0, "id": "call_1"}]}]))
        error = await fail(model)
        assert (error.message, error.status, error.retryable) == (
            "the model server sent a tool call without a name",
            None,
            False,
        )

    async def test_refusal_is_text(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeResponse(deltas=[{"role": "assistant", "refusal": "I can't help with that."}]))
        assert await collect(model) == [
            TextStart("txt-0"),
            TextDelta("txt-0", "I can't help with that."),
            TextEnd("txt-0"),
            Finish("stop", USAGE),
        ]

    @pytest.mark.parametrize(
        ("sent", "reason"),
        [
            ("stop", "stop"),
            ("length", "length"),
            ("content_filter", "content-filter"),
            ("tool_calls", "tool-calls"),
            ("function_call", "tool-calls"),
            ("something_new", "other"),
        ],
    )
    async def test_finish_reasons(
        self, server: FakeOpenAI, model: OpenAIChatModel, sent: str, reason: FinishReason
    ) -> None:
        server.enqueue(FakeResponse(text="x", finish_reason=sent, usage=(3, 1)))
        events = await collect(model)
        assert events[-1] == Finish(reason, Usage(input_tokens=3, output_tokens=1))

    async def test_missing_finish_reason(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(
            FakeResponse(text="x", finish_reason=None),
            FakeResponse(tool_calls=[("call_1", "f", "{}")], finish_reason=None),
        )
        assert (await collect(model))[-1] == Finish("stop", USAGE)
        assert (await collect(model))[-1] == Finish("tool-calls", USAGE)

    async def test_empty_stream_still_finishes(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeResponse(deltas=[], finish_reason=None))
        assert await collect(model) == [Finish("stop", USAGE)]

    async def test_stopping_early_closes_the_response(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeResponse(text="a long answer that nobody reads", chunk_size=1), FakeResponse(text="ok"))
        events = model.stream(HELLO)
        assert isinstance(events, AsyncGenerator)
        assert await anext(events) == TextStart("txt-0")
        await events.aclose()
        assert (await collect(model))[-1] == Finish("stop", USAGE)  # the client is still usable


class TestRequest:
    async def test_conversation_tools_and_settings(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        png = "data:image/png;base64,iVBORw0KGgo="
        pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4").decode()
        notes = "data:text/plain;base64," + base64.b64encode("héllo".encode()).decode()
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        request = ModelRequest(
            messages=[
                ModelMessage("system", [TextContent("Be brief."), TextContent("Use metric units.")]),
                ModelMessage(
                    "user",
                    [
                        TextContent("What is in these?"),
                        FilePart("image/png", png),
                        FilePart("image/jpeg", "https://example.com/cat.jpg", "cat.jpg"),
                        FilePart("application/pdf", pdf, "report.pdf"),
                        FilePart("text/plain", notes, "notes.txt"),
                        FilePart("application/zip", "https://example.com/a.zip", "a.zip"),
                        FilePart("application/octet-stream", "data:application/octet-stream;base64,AAE="),
                    ],
                ),
                ModelMessage(
                    "assistant",
                    [
                        ReasoningContent("They want the weather."),
                        TextContent("Checking."),
                        ToolCallContent("call_1", "get_weather", {"city": "Paris"}),
                        ToolCallContent("call_2", "get_time", {"tz": "CET"}),
                    ],
                ),
                ModelMessage(
                    "tool",
                    [
                        ToolResultContent("call_1", "get_weather", {"temp_c": 21, "sky": "clear"}),
                        ToolResultContent("call_2", "get_time", "unknown time zone: CET", is_error=True),
                    ],
                ),
            ],
            tools=[ToolSpec("get_weather", "The weather in a city.", schema)],
            settings={"temperature": 0.2, "maxOutputTokens": 100, "topK": 5, "seed": None, "not_a_setting": 1},
        )
        server.enqueue(FakeResponse(text="Sunny."))
        await collect(model, request)

        assert server.requests == [
            {
                "model": "gpt-test",
                "stream": True,
                "stream_options": {"include_usage": True},
                "temperature": 0.2,
                "max_tokens": 100,
                "top_k": 5,
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "description": "The weather in a city.",
                            "parameters": schema,
                        },
                    }
                ],
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nUse metric units."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in these?"},
                            {"type": "image_url", "image_url": {"url": png}},
                            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                            {"type": "file", "file": {"filename": "report.pdf", "file_data": pdf}},
                            {"type": "text", "text": "[File: notes.txt]\nhéllo"},
                            {
                                "type": "text",
                                "text": "[Attached file a.zip (application/zip) at https://example.com/a.zip;"
                                " its content could not be sent to the model]",
                            },
                            {
                                "type": "text",
                                "text": "[Attached file application/octet-stream;"
                                " its content could not be sent to the model]",
                            },
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": "Checking.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                            },
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21, "sky": "clear"}'},
                    {"role": "tool", "tool_call_id": "call_2", "content": "unknown time zone: CET"},
                ],
            }
        ]
        assert server.headers[0]["authorization"] == f"Bearer {API_KEY}"

    async def test_single_text_is_a_string_and_no_tools_means_no_tools_key(
        self, server: FakeOpenAI, model: OpenAIChatModel
    ) -> None:
        server.enqueue(FakeResponse(text="Hello"))
        await collect(model)
        assert server.requests[0]["messages"] == [{"role": "user", "content": "Hi"}]
        assert "tools" not in server.requests[0]

    async def test_assistant_tool_calls_only_and_raw_arguments(
        self, server: FakeOpenAI, model: OpenAIChatModel
    ) -> None:
        """A call whose arguments were not JSON (``input`` is the raw text) is sent back exactly as received."""
        request = ModelRequest(
            messages=[
                ModelMessage("user", [TextContent("Go")]),
                ModelMessage("assistant", [ReasoningContent("hmm"), ToolCallContent("call_1", "f", '{"a": ')]),
                ModelMessage("tool", [ToolResultContent("call_1", "f", "bad JSON input", is_error=True)]),
                ModelMessage("assistant", [ReasoningContent("only thoughts")]),
            ]
        )
        server.enqueue(FakeResponse(text="ok"))
        await collect(model, request)
        assert server.requests[0]["messages"][1:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": '}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "bad JSON input"},
        ]


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "retryable", "phrase"),
        [
            (400, False, "rejected the request"),
            (401, False, "refused the API key"),
            (404, False, "does not know this model or endpoint"),
            (408, True, "timed out"),
            (429, True, "is rate limiting requests"),
            (500, True, "failed"),
            (503, True, "failed"),
        ],
    )
    async def test_http_status(
        self, server: FakeOpenAI, model: OpenAIChatModel, status: int, retryable: bool, phrase: str
    ) -> None:
        server.enqueue(FakeError(status))
        error = await fail(model)
        assert (error.message, error.status, error.retryable) == (
            f"the model server {phrase} (HTTP {status}): fake error {status}",
            status,
            retryable,
        )

    async def test_message_never_contains_the_key_or_the_url(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeError(401, {"error": {"message": f"Incorrect API key provided: {API_KEY}."}}))
        error = await fail(model)
        assert error.message == "the model server refused the API key (HTTP 401): Incorrect API key provided: ***."
        assert API_KEY not in str(error) and "127.0.0.1" not in str(error)

    async def test_non_json_error_body_is_not_shown(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeError(502, "<html>Bad gateway</html>"))
        error = await fail(model)
        assert (error.message, error.status, error.retryable) == ("the model server failed (HTTP 502)", 502, True)

    async def test_error_event_inside_the_stream(self, server: FakeOpenAI, model: OpenAIChatModel) -> None:
        server.enqueue(FakeResponse(text="Hel", stream_error={"message": "overloaded", "type": "server_error"}))
        events: list[ModelEvent] = []
        with pytest.raises(ModelError) as info:
            async for event in model.stream(HELLO):
                events.append(event)
        assert events == [TextStart("txt-0"), TextDelta("txt-0", "Hel")]
        assert (info.value.message, info.value.status) == ("the model server reported an error: overloaded", None)

    async def test_connection_refused(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        async with OpenAIChatModel("gpt-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as model:
            error = await fail(model)
        assert (error.message, error.status, error.retryable) == (
            f"could not connect to the model server at http://127.0.0.1:{port}/v1",
            None,
            True,
        )

    async def test_timeout(self, server: FakeOpenAI) -> None:
        server.enqueue(FakeResponse(text="late", delay=5))
        async with OpenAIChatModel("gpt-test", base_url=server.base_url, timeout=0.05, max_retries=0) as model:
            error = await fail(model)
        assert (error.message, error.status, error.retryable) == (
            f"the model server at {server.base_url.rstrip('/')} did not answer in time",
            None,
            True,
        )


class TestGuard:
    async def test_refuses_non_loopback_without_network_io(self) -> None:
        sent: list[httpx2.Request] = []

        def transport(request: httpx2.Request) -> httpx2.Response:
            sent.append(request)
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: [DONE]\n\n")

        async with (
            httpx2.AsyncClient(transport=httpx2.MockTransport(transport)) as http,
            AsyncOpenAI(api_key="k", base_url="https://api.example.com/v1", http_client=http, max_retries=0) as client,
        ):
            model = OpenAIChatModel("gpt-test", client=client)
            error = await fail(model)
            assert (error.message, error.status, error.retryable) == ("model requests are disabled", None, False)
            assert sent == []

            openai_provider.ALLOW_MODEL_REQUESTS = True  # restored by the autouse fixture's monkeypatch
            assert await collect(model) == [Finish("stop")]
            assert [str(request.url) for request in sent] == ["https://api.example.com/v1/chat/completions"]

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.8.9.10", True),
            ("localhost", True),
            ("LOCALHOST.", True),
            ("::1", True),
            ("[::1]", True),
            ("api.openai.com", False),
            ("10.0.0.1", False),
            ("::", False),
            ("localhost.example.com", False),
        ],
    )
    def test_loopback_hosts(self, host: str, loopback: bool) -> None:
        assert openai_provider._is_loopback(host) is loopback


class TestConfiguration:
    async def test_name_and_protocol(self, model: OpenAIChatModel) -> None:
        assert model.name == "openai:gpt-test"
        assert isinstance(model, Model)

    async def test_environment_and_placeholder_key(self, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        server.enqueue(FakeResponse(text="ok"))
        async with OpenAIChatModel("local-model", max_retries=0) as model:
            assert (await collect(model))[-1] == Finish("stop", USAGE)
        assert server.headers[0]["authorization"] == f"Bearer {openai_provider.PLACEHOLDER_API_KEY}"
        assert server.requests[0]["model"] == "local-model"

    async def test_key_from_environment(self, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        server.enqueue(FakeResponse(text="ok"))
        async with OpenAIChatModel("gpt-test", base_url=server.base_url, max_retries=0) as model:
            await collect(model)
        assert server.headers[0]["authorization"] == "Bearer sk-from-env"

    async def test_a_client_passed_in_is_left_open(self, server: FakeOpenAI) -> None:
        async with AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0) as client:
            async with OpenAIChatModel("gpt-test", client=client) as model:
                assert model.client is client
            assert not client.is_closed()
