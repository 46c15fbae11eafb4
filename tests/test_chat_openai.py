"""``openai:<model>`` end to end: ``POST /api/chat`` → chatkeep → a local OpenAI-compatible server (a real HTTP
server speaking the Chat Completions stream) → tool call → tool result → the model's answer, stored and streamed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.chat.models import resolve_model
from chatkeep.chat.service import ChatService
from chatkeep.providers.openai import OpenAIChatModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.tools import ToolRegistry, builtin_tools
from tests.fake_openai import FakeError, FakeOpenAI, FakeResponse


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def openai_client(store: ChatStore, fake_openai: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    fake_openai.reset()
    model = OpenAIChatModel("gpt-test", base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)
    service = ChatService(store, model, tools=ToolRegistry(builtin_tools()))
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as client:
        yield client
    await model.aclose()


def _chunks(response: httpx.Response) -> list[dict[str, Any]]:
    events = [e for e in response.text.split("\n\n") if e and e != "data: [DONE]"]
    return [json.loads(e.removeprefix("data: ")) for e in events]


async def test_tool_round_trip_through_an_openai_compatible_server(
    openai_client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        FakeResponse(reasoning="Need the weather.", tool_calls=[("call_1", "get_weather", '{"city": "Oslo"}')]),
        FakeResponse(text="It is chilly in Oslo.", chunk_size=4),
    )
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather in Oslo?"}]}
    response = await openai_client.post("/api/chat", json={"id": "t1", "messages": [user]})
    assert response.status_code == 200, response.text
    chunks = _chunks(response)
    kinds = [c["type"] for c in chunks]
    assert kinds.count("start-step") == 2
    assert "reasoning-start" in kinds and "tool-output-available" in kinds

    first, second = fake_openai.requests
    assert first["model"] == "gpt-test" and first["stream"] is True
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert first["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert json.loads(tool_message["content"])["city"] == "Oslo"

    reply = (await openai_client.get("/api/chat/t1/messages")).json()[1]
    types = [p["type"] for p in reply["parts"]]
    assert types == ["step-start", "reasoning", "tool-get_weather", "step-start", "text"]
    assert reply["parts"][-1] == {"type": "text", "text": "It is chilly in Oslo.", "state": "done"}


async def test_an_upstream_error_ends_the_stream_with_an_error_chunk(
    openai_client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(FakeError(status=429, body={"error": {"message": "Rate limit reached", "type": "rate"}}))
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    response = await openai_client.post("/api/chat", json={"id": "t1", "messages": [user]})
    chunks = _chunks(response)
    assert chunks[-1]["type"] == "error" and "429" in chunks[-1]["errorText"]
    assert "sk-test" not in response.text
    # The prompt is kept, and so is the failed reply: empty, with what failed (tests/test_failed_turns.py).
    prompt, reply = (await openai_client.get("/api/chat/t1/messages")).json()
    assert prompt["id"] == "u1" and reply["parts"] == [] and "429" in reply["metadata"]["chatkeep"]["error"]


def test_model_names_resolve() -> None:
    settings = Settings()
    assert resolve_model("demo", settings).name == "demo"
    assert resolve_model("openai:gpt-4o-mini", settings).name == "openai:gpt-4o-mini"
    with pytest.raises(Exception, match="unknown model"):
        resolve_model("claude", settings)
