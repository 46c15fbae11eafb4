"""``PydanticAIModel``: a Pydantic AI agent as a chatkeep model, offline (``FunctionModel``/``TestModel``).

The events of one agent run (text, thinking, the agent's own tool calls and their results, errors), the
conversation the agent receives, and the whole path through ``POST /api/chat`` on both databases.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

import httpx
import pytest
from pydantic import BaseModel
from pydantic_ai import (
    Agent,
    BinaryContent,
    BinaryImage,
    DeferredToolRequests,
    DocumentUrl,
    ImageUrl,
    ModelHTTPError,
    ModelRetry,
    NativeToolCallPart,
    NativeToolReturnPart,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    SystemPromptPart,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UnexpectedModelBehavior,
    UserPromptPart,
)
from pydantic_ai import ModelMessage as PydanticAIMessage
from pydantic_ai import ModelRequest as PydanticAIRequest
from pydantic_ai import ModelResponse as PydanticAIResponse
from pydantic_ai.exceptions import AgentRunError, UsageLimitExceeded
from pydantic_ai.messages import Citation, DocumentCitationSource, WebCitationSource
from pydantic_ai.models.function import (
    AgentInfo,
    BuiltinToolCallsReturns,
    DeltaThinkingCalls,
    DeltaThinkingPart,
    DeltaToolCall,
    DeltaToolCalls,
    FunctionModel,
)
from pydantic_ai.models.test import TestModel

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.providers.base import (
    FilePart,
    Finish,
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
)
from chatkeep.providers.pydantic_ai import PydanticAIModel, to_pydantic_ai
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.test_chat import post_chat, user

Chunk: TypeAlias = str | DeltaToolCalls | DeltaThinkingCalls | BuiltinToolCallsReturns


@pytest.fixture(autouse=True)
def _no_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real model: pydantic-ai refuses every model but the offline test models."""
    monkeypatch.setattr("pydantic_ai.models.ALLOW_MODEL_REQUESTS", False)


def ask(text: str) -> ModelRequest:
    return ModelRequest([ModelMessage("user", [TextContent(text)])])


async def collect(
    model: PydanticAIModel, request: ModelRequest, into: list[ModelEvent] | None = None
) -> list[ModelEvent]:
    events = into if into is not None else []
    async for event in model.stream(request):
        events.append(event)
    return events


def without_finish(events: Sequence[ModelEvent]) -> list[ModelEvent]:
    assert isinstance(events[-1], Finish)
    assert not any(isinstance(e, Finish) for e in events[:-1])
    return list(events[:-1])


class WeatherAgent:
    """An agent whose model first calls ``get_weather`` (arguments streamed in two pieces), then answers with
    the tool's result; ``seen`` keeps every conversation the model received."""

    def __init__(self) -> None:
        self.seen: list[list[PydanticAIMessage]] = []
        self.agent = Agent(FunctionModel(stream_function=self.model), instructions="Be brief.")

        @self.agent.tool_plain
        def get_weather(city: str) -> dict[str, Any]:
            """The weather in a city."""
            return {"city": city, "temp": 21}

    async def model(self, messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
        self.seen.append(messages)
        returns = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        if not returns:
            yield {0: DeltaToolCall(name="get_weather", json_args='{"city": ', tool_call_id="call-1")}
            yield {0: DeltaToolCall(json_args='"Paris"}')}
            return
        weather = returns[0].model_response_object()
        yield "It is "
        yield f"{weather['temp']} degrees in {weather['city']}."


class TestEvents:
    async def test_text(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield "Hello"
            yield ", world"

        events = await collect(PydanticAIModel(Agent(FunctionModel(stream_function=model))), ask("hi"))
        assert without_finish(events) == [
            TextStart("txt-0"), TextDelta("txt-0", "Hello"), TextDelta("txt-0", ", world"), TextEnd("txt-0"),
        ]  # fmt: skip
        finish = events[-1]
        assert isinstance(finish, Finish) and finish.reason == "stop"
        assert finish.usage.input_tokens and finish.usage.output_tokens

    async def test_test_model_text(self) -> None:
        model = PydanticAIModel(Agent(TestModel(custom_output_text="Fine, thanks.")), name="helper")
        assert model.name == "helper"
        events = await collect(model, ask("how are you?"))
        assert "".join(e.delta for e in events if isinstance(e, TextDelta)) == "Fine, thanks."
        assert [type(e) for e in events if not isinstance(e, TextDelta)] == [TextStart, TextEnd, Finish]

    async def test_the_agent_runs_its_tool_then_answers(self) -> None:
        weather = WeatherAgent()
        events = await collect(PydanticAIModel(weather.agent), ask("weather in Paris?"))
        assert without_finish(events) == [
            ToolInputStart("call-1", "get_weather"),
            ToolInputDelta("call-1", '{"city": '),
            ToolInputDelta("call-1", '"Paris"}'),
            ToolCall("call-1", "get_weather", {"city": "Paris"}, provider_executed=True),
            ToolResult("call-1", {"city": "Paris", "temp": 21}),
            TextStart("txt-0"),
            TextDelta("txt-0", "It is "),
            TextDelta("txt-0", "21 degrees in Paris."),
            TextEnd("txt-0"),
        ]
        finish = events[-1]
        assert isinstance(finish, Finish) and finish.reason == "stop" and len(weather.seen) == 2

    async def test_test_model_calls_every_tool(self) -> None:
        agent = Agent(TestModel())

        @agent.tool_plain
        def lookup(term: str) -> str:
            """Look a term up."""
            return f"{term} means nothing"

        events = await collect(PydanticAIModel(agent), ask("look it up"))
        calls = [e for e in events if isinstance(e, ToolCall)]
        assert len(calls) == 1 and calls[0].tool_name == "lookup" and calls[0].provider_executed
        assert ToolResult(calls[0].tool_call_id, "a means nothing") in events
        assert [type(e) for e in events[-3:]] == [TextDelta, TextEnd, Finish]

    async def test_thinking_then_text(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield {0: DeltaThinkingPart(content="The user ")}
            yield {0: DeltaThinkingPart(content="greets me.")}
            yield "Hi!"

        events = await collect(PydanticAIModel(Agent(FunctionModel(stream_function=model))), ask("hi"))
        assert without_finish(events) == [
            ReasoningStart("rsn-0"), ReasoningDelta("rsn-0", "The user "), ReasoningDelta("rsn-0", "greets me."),
            ReasoningEnd("rsn-0"), TextStart("txt-0"), TextDelta("txt-0", "Hi!"), TextEnd("txt-0"),
        ]  # fmt: skip

    async def test_retries_and_bad_arguments_are_error_results(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            if len(messages) == 1:
                yield {0: DeltaToolCall(name="book", json_args='{"day": "monday"}', tool_call_id="c1")}
                yield {1: DeltaToolCall(name="book", json_args="{}", tool_call_id="c2")}
                yield {2: DeltaToolCall(name="teleport", json_args="{}", tool_call_id="c3")}
            else:
                yield "Sorry."

        agent = Agent(FunctionModel(stream_function=model))

        @agent.tool_plain
        def book(day: str) -> str:
            """Book a day."""
            raise ModelRetry(f"{day} is full, try tuesday")

        events = await collect(PydanticAIModel(agent), ask("book monday"))
        results = {e.tool_call_id: e for e in events if isinstance(e, ToolResult)}
        assert results["c1"] == ToolResult("c1", "monday is full, try tuesday", is_error=True)
        assert results["c2"].is_error and results["c2"].output == "Invalid arguments: day: Field required"
        assert results["c3"].is_error and "teleport" in results["c3"].output
        assert [e.tool_call_id for e in events if isinstance(e, ToolCall)] == ["c1", "c2", "c3"]
        assert isinstance(events[-1], Finish) and events[-1].reason == "stop"

    async def test_a_repeated_tool_call_id_is_made_unique(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            if len(messages) < 5:
                yield {0: DeltaToolCall(name="step", json_args="{}", tool_call_id="same")}
            else:
                yield "done"

        agent = Agent(FunctionModel(stream_function=model))
        count = 0

        @agent.tool_plain
        def step() -> int:
            nonlocal count
            count += 1
            return count

        events = await collect(PydanticAIModel(agent), ask("go"))
        assert [(e.tool_call_id, e.output) for e in events if isinstance(e, ToolResult)] == [("same", 1), ("same-2", 2)]

    async def test_a_built_in_tool_of_the_provider(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            search: BuiltinToolCallsReturns = {
                0: NativeToolCallPart("web_search", {"query": "chatkeep"}, "ws-1", provider_name="function")
            }
            found: BuiltinToolCallsReturns = {
                1: NativeToolReturnPart("web_search", [{"url": "https://e.com"}], "ws-1", provider_name="function")
            }
            yield search
            yield found
            yield "Found it."

        events = await collect(PydanticAIModel(Agent(FunctionModel(stream_function=model))), ask("search"))
        assert without_finish(events) == [
            ToolInputStart("ws-1", "web_search"),
            ToolInputDelta("ws-1", '{"query": "chatkeep"}'),
            ToolCall("ws-1", "web_search", {"query": "chatkeep"}, provider_executed=True),
            ToolResult("ws-1", [{"url": "https://e.com"}]),
            TextStart("txt-0"), TextDelta("txt-0", "Found it."), TextEnd("txt-0"),
        ]  # fmt: skip

    async def test_structured_output_is_the_output_tool_s_call(self) -> None:
        class Answer(BaseModel):
            value: int

        agent = Agent(TestModel(custom_output_args={"value": 42}), output_type=Answer)
        events = await collect(PydanticAIModel(agent), ask("what is it?"))
        (call,) = [e for e in events if isinstance(e, ToolCall)]
        assert call.tool_name == "final_result" and call.input == {"value": 42} and call.provider_executed
        assert ToolResult(call.tool_call_id, "Final result processed.") in events
        assert isinstance(events[-1], Finish) and events[-1].reason == "stop"

    async def test_a_deferred_tool_call_is_answered_with_an_error(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield {0: DeltaToolCall(name="delete", json_args='{"path": "/tmp/x"}', tool_call_id="d1")}

        agent = Agent(FunctionModel(stream_function=model), output_type=[str, DeferredToolRequests])

        @agent.tool_plain(requires_approval=True)
        def delete(path: str) -> str:
            """Delete a file (asks first)."""
            raise AssertionError("never runs without an approval")

        events = await collect(PydanticAIModel(agent), ask("clean up"))
        assert events[-3:-1] == [
            ToolCall("d1", "delete", {"path": "/tmp/x"}, provider_executed=True),
            ToolResult("d1", "The agent deferred this tool call (approval or external execution), which chatkeep "
                             "does not support.", is_error=True),
        ]  # fmt: skip
        finish = events[-1]
        assert isinstance(finish, Finish) and finish.reason == "other"

    def test_cited_web_pages_are_sources(self) -> None:
        """Citations come on a text part's end, or in a delta of their own (no offline model sends them)."""
        from chatkeep.providers.pydantic_ai import _EventStream

        page = WebCitationSource("https://example.com/a", title="A")
        cited = TextPart("Paris.", citations=[Citation([page, DocumentCitationSource(title="notes.pdf")])])
        stream = _EventStream()
        events = [
            *stream.feed(PartStartEvent(index=0, part=TextPart("Paris."))),
            *stream.feed(PartEndEvent(index=0, part=cited)),
            *stream.feed(PartDeltaEvent(index=0, delta=TextPartDelta("", citations_delta=[Citation([page])]))),
            *stream.feed(
                PartDeltaEvent(
                    index=0, delta=TextPartDelta("", citations_delta=[Citation([WebCitationSource("https://b.org")])])
                )
            ),
        ]
        assert events == [
            TextStart("txt-0"), TextDelta("txt-0", "Paris."), TextEnd("txt-0"),
            Source("https://example.com/a", "https://example.com/a", "A"), Source("https://b.org", "https://b.org"),
        ]  # fmt: skip

    async def test_settings_reach_the_model(self) -> None:
        received: list[Any] = []

        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            received.append(info.model_settings)
            yield "ok"

        request = ModelRequest(ask("hi").messages, settings={"temperature": 0.2, "maxOutputTokens": 50, "stop": "x"})
        await collect(PydanticAIModel(Agent(FunctionModel(stream_function=model))), request)
        assert received[0] is not None
        assert {k: received[0][k] for k in ("temperature", "max_tokens", "stop_sequences")} == {
            "temperature": 0.2, "max_tokens": 50, "stop_sequences": ["x"],
        }  # fmt: skip


class TestErrors:
    @pytest.mark.parametrize(
        ("error", "message", "status", "retryable"),
        [
            (ModelHTTPError(503, "m", body={"error": "secret detail"}),
             "the model server answered with HTTP status 503", 503, True),
            (ModelHTTPError(400, "m", body="secret detail"), "the model server answered with HTTP status 400", 400,
             False),
            (UnexpectedModelBehavior("bad", body="secret detail"), "the model sent an unexpected response", None,
             False),
            (UsageLimitExceeded("secret detail"), "the agent reached its usage limit", None, False),
            (AgentRunError("secret detail"), "the agent run failed", None, False),
        ],
    )  # fmt: skip
    async def test_run_errors_are_model_errors_after_closing_parts(
        self, error: Exception, message: str, status: int | None, retryable: bool
    ) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield "partial"
            raise error

        events: list[ModelEvent] = []
        with pytest.raises(ModelError) as caught:
            await collect(PydanticAIModel(Agent(FunctionModel(stream_function=model))), ask("hi"), events)
        assert (caught.value.message, caught.value.status, caught.value.retryable) == (message, status, retryable)
        assert "secret" not in caught.value.message and caught.value.__cause__ is error
        assert events == [TextStart("txt-0"), TextDelta("txt-0", "partial"), TextEnd("txt-0")]

    async def test_a_failing_run_answers_the_calls_it_left_open(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield {0: DeltaToolCall(name="explode", json_args="{}", tool_call_id="c1")}

        agent = Agent(FunctionModel(stream_function=model))

        @agent.tool_plain
        def explode() -> str:
            """A tool with a bug."""
            raise RuntimeError("bug in the tool")

        events: list[ModelEvent] = []
        with pytest.raises(RuntimeError, match="bug in the tool"):
            await collect(PydanticAIModel(agent), ask("go"), events)
        assert events[-2:] == [
            ToolCall("c1", "explode", {}, provider_executed=True),
            ToolResult("c1", "The tool call was interrupted by an error.", is_error=True),
        ]

    async def test_a_model_error_in_the_middle_of_a_tool_call(self) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield {0: DeltaToolCall(name="lookup", json_args='{"q": "x"', tool_call_id="c1")}
            raise ModelHTTPError(502, "m")

        events: list[ModelEvent] = []
        with pytest.raises(ModelError):
            await collect(PydanticAIModel(Agent(FunctionModel(stream_function=model))), ask("go"), events)
        assert events == [
            ToolInputStart("c1", "lookup"),
            ToolInputDelta("c1", '{"q": "x"'),
            ToolCall("c1", "lookup", '{"q": "x"', provider_executed=True),
            ToolResult("c1", "The tool call was interrupted by an error.", is_error=True),
        ]


class TestConversation:
    def test_history_and_prompt(self) -> None:
        png = "data:image/png;base64,iVBORw0KGgo="
        messages = [
            ModelMessage("system", [TextContent("Be kind.")]),
            ModelMessage("user", [TextContent("What is in these?"), FilePart("image/png", png, "a.png"),
                                  FilePart("application/pdf", "https://example.com/r.pdf", "r.pdf"),
                                  FilePart("image/jpeg", "blob:local-1", "b.jpg")]),
            ModelMessage("assistant", [ReasoningContent("Look first."),
                                       ToolCallContent("c1", "look", {"file": "a.png"}),
                                       ToolCallContent("c2", "look", {"file": "b.jpg"}),
                                       ToolCallContent("c3", "never_answered", {}),
                                       TextContent("A cat and a report.")]),
            ModelMessage("tool", [ToolResultContent("c1", "look", {"seen": "cat"}),
                                  ToolResultContent("c2", "look", "no such file", is_error=True)]),
            ModelMessage("user", [TextContent("Thanks!")]),
        ]  # fmt: skip
        history, prompt = to_pydantic_ai(messages)
        assert prompt == "Thanks!"
        assert [type(m) for m in history] == [PydanticAIRequest, PydanticAIResponse, PydanticAIRequest,
                                              PydanticAIResponse]  # fmt: skip
        first = history[0].parts
        assert isinstance(first[0], SystemPromptPart) and first[0].content == "Be kind."
        assert isinstance(first[1], UserPromptPart) and isinstance(first[1].content, list)
        text, image, document, note = first[1].content
        assert text == "What is in these?"
        assert isinstance(image, BinaryImage) and image.data == b"\x89PNG\r\n\x1a\n" and image.identifier == "a.png"
        assert isinstance(document, DocumentUrl) and document.url == "https://example.com/r.pdf"
        assert document.media_type == "application/pdf"
        assert note == "[Attached file b.jpg (image/jpeg); its content could not be sent to the model]"
        thinking, call_1, call_2 = history[1].parts
        assert isinstance(thinking, ThinkingPart) and thinking.content == "Look first."
        assert isinstance(call_1, ToolCallPart) and (call_1.tool_call_id, call_1.args) == ("c1", {"file": "a.png"})
        assert isinstance(call_2, ToolCallPart) and call_2.tool_call_id == "c2"
        return_1, return_2 = history[2].parts
        assert isinstance(return_1, ToolReturnPart) and return_1.content == {"seen": "cat"}
        assert return_1.outcome == "success"
        assert isinstance(return_2, ToolReturnPart) and (return_2.content, return_2.outcome) == ("no such file",
                                                                                                  "failed")  # fmt: skip
        (answer,) = history[3].parts
        assert isinstance(answer, TextPart) and answer.content == "A cat and a report."

    def test_files_in_the_prompt(self) -> None:
        _, prompt = to_pydantic_ai(
            [ModelMessage("user", [FilePart("image/webp", "https://example.com/cat.webp"),
                                   FilePart("text/plain", "data:text/plain,hello%20there", "note.txt")])]
        )  # fmt: skip
        assert isinstance(prompt, list)
        image, text_file = prompt
        assert isinstance(image, ImageUrl) and image.media_type == "image/webp"
        assert isinstance(text_file, BinaryContent) and text_file.data == b"hello there"

    def test_a_request_that_does_not_end_with_the_user(self) -> None:
        history, prompt = to_pydantic_ai(
            [ModelMessage("user", [TextContent("hi")]), ModelMessage("assistant", [TextContent("hello")])]
        )
        assert prompt is None and [type(m) for m in history] == [PydanticAIRequest, PydanticAIResponse]


def test_chatkeep_does_not_import_pydantic_ai() -> None:
    code = (
        "import sys, chatkeep.api, chatkeep.cli, chatkeep.chat.service, chatkeep.providers.openai;"
        "assert 'pydantic_ai' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_clear_error_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "pydantic_ai", None)
    monkeypatch.delitem(sys.modules, "chatkeep.providers.pydantic_ai")
    with pytest.raises(ImportError, match=r"needs pydantic-ai-slim .*: pip install -U 'chatkeep\[pydantic-ai\]'"):
        importlib.import_module("chatkeep.providers.pydantic_ai")


class TestChat:
    """Through ``POST /api/chat`` and the stored thread, on both databases."""

    @staticmethod
    def client(store: ChatStore, model: PydanticAIModel) -> httpx.AsyncClient:
        app = create_app(Settings(migrate_on_start=False), store=store, chat=ChatService(store, model))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test")

    async def test_the_agent_s_tool_call_is_streamed_and_stored(self, store: ChatStore) -> None:
        weather = WeatherAgent()
        async with self.client(store, PydanticAIModel(weather.agent)) as client:
            chunks = await post_chat(client, {"id": "t1", "messages": [user("weather in Paris?")]})
            assert [c["type"] for c in chunks] == [
                "start", "start-step", "tool-input-start", "tool-input-delta", "tool-input-delta",
                "tool-input-available", "tool-output-available", "text-start", "text-delta", "text-delta", "text-end",
                "finish-step", "finish",
            ]  # fmt: skip
            assert chunks[5] == {
                "type": "tool-input-available", "toolCallId": "call-1", "toolName": "get_weather",
                "input": {"city": "Paris"}, "providerExecuted": True,
            }  # fmt: skip
            assert chunks[6] == {
                "type": "tool-output-available", "toolCallId": "call-1", "output": {"city": "Paris", "temp": 21},
            }  # fmt: skip
            branch = (await client.get("/api/chat/t1/messages")).json()
            assert branch[1] == {
                "id": chunks[0]["messageId"],
                "role": "assistant",
                "parts": [
                    {"type": "step-start"},
                    {"type": "tool-get_weather", "toolCallId": "call-1", "state": "output-available",
                     "input": {"city": "Paris"}, "output": {"city": "Paris", "temp": 21}, "providerExecuted": True},
                    {"type": "text", "text": "It is 21 degrees in Paris.", "state": "done"},
                ],
            }  # fmt: skip

    async def test_the_next_turn_gives_the_agent_the_earlier_messages(self, store: ChatStore) -> None:
        weather = WeatherAgent()
        async with self.client(store, PydanticAIModel(weather.agent)) as client:
            await post_chat(client, {"id": "t1", "messages": [user("weather in Paris?")]})
            weather.seen.clear()
            await post_chat(client, {"id": "t1", "message": user("and in Oslo?", "u2")})
        first = weather.seen[0]
        assert [type(m) for m in first] == [PydanticAIRequest, PydanticAIResponse, PydanticAIRequest,
                                            PydanticAIResponse, PydanticAIRequest]  # fmt: skip
        assert [p.content for p in first[0].parts if isinstance(p, UserPromptPart)] == ["weather in Paris?"]
        (call,) = first[1].parts
        assert isinstance(call, ToolCallPart)
        assert (call.tool_name, call.tool_call_id, call.args) == ("get_weather", "call-1", {"city": "Paris"})
        (result,) = first[2].parts
        assert isinstance(result, ToolReturnPart) and result.content == {"city": "Paris", "temp": 21}
        (text,) = first[3].parts
        assert isinstance(text, TextPart) and text.content == "It is 21 degrees in Paris."
        assert [p.content for p in first[4].parts if isinstance(p, UserPromptPart)] == ["and in Oslo?"]
        assert isinstance(first[4], PydanticAIRequest) and first[4].instructions == "Be brief."

    async def test_a_silent_agent_times_out_and_its_run_is_cancelled(self, store: ChatStore) -> None:
        """chatkeep's idle timeout also counts while the agent runs a tool: the run is cancelled, tool included."""
        cancelled: list[str] = []

        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield {0: DeltaToolCall(name="slow", json_args="{}", tool_call_id="s1")}

        agent = Agent(FunctionModel(stream_function=model))

        @agent.tool_plain
        async def slow() -> str:
            """Takes its time."""
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append("slow")
                raise
            return "done"

        service = ChatService(store, PydanticAIModel(agent), model_timeout=0.2)
        app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as client:
            chunks = await post_chat(client, {"id": "t1", "messages": [user("go")]})
        assert chunks[-1] == {"type": "error", "errorText": "The model stopped responding (nothing for 0.2 s)."}
        assert cancelled == ["slow"]

    async def test_a_model_failure_ends_the_stream_with_its_safe_message(self, store: ChatStore) -> None:
        async def model(messages: list[PydanticAIMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
            yield "Let me see"
            raise ModelHTTPError(429, "m", body={"error": "quota for key sk-secret"})

        async with self.client(store, PydanticAIModel(Agent(FunctionModel(stream_function=model)))) as client:
            chunks = await post_chat(client, {"id": "t1", "messages": [user("hi")]})
            assert chunks[-1] == {"type": "error", "errorText": "the model server answered with HTTP status 429"}
            reply = (await client.get("/api/chat/t1/messages")).json()[1]
            assert reply["parts"][1] == {"type": "text", "text": "Let me see", "state": "done"}
