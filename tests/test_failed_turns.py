"""A model turn that fails leaves a trace: the failed reply is stored, and a retry is a new sibling reply.

chatkeep talks to a real local OpenAI-compatible server (:mod:`tests.fake_openai`) that fails in each way a model
server does: nothing listens on its port, it answers 500, it drops the connection in the middle of a reply, it
goes silent. Each time the stream ends with the AI SDK ``error`` chunk (as before), and the reply is stored with
what was streamed before the failure, status ``error`` and the error text (in its metadata, ``chatkeep.error``), so
both history APIs return it after a reload; regenerating it makes a new sibling reply that succeeds. The real
AI SDK clients (ai 5, 6, 7) build from that stream exactly the reply that is stored. On both databases.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.providers.base import ModelError, ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel, last_user_text
from chatkeep.providers.openai import OpenAIChatModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.fake_openai import FakeError, FakeOpenAI, FakeResponse

API_KEY = "sk-test-failed-turns-secret"
USER = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Tell me about fjords"}]}


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@dataclass
class Setup:
    client: httpx.AsyncClient
    service: ChatService
    server: FakeOpenAI
    model: OpenAIChatModel


@pytest.fixture
async def setup(store: ChatStore, fake_openai: FakeOpenAI) -> AsyncIterator[Setup]:
    fake_openai.reset()
    model = OpenAIChatModel("gpt-test", base_url=fake_openai.base_url, api_key=API_KEY, max_retries=0)
    service = ChatService(store, model, model_timeout=10)
    app = create_app(Settings(migrate_on_start=False), store=store, chat=service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as client:
        yield Setup(client, service, fake_openai, model)
    await model.aclose()


def _closed_port_url() -> str:
    """The URL of a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _chunks(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


def _text(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


#: how the model server fails → (what it is scripted with, the text streamed before, how the error text begins)
FAILURES = {
    "refused": (None, "", "could not connect to the model server"),
    "http-500": (
        FakeError(500, {"error": {"message": "the GPU caught fire"}}),
        "",
        "the model server failed (HTTP 500): the GPU caught fire",
    ),
    "cut-mid-stream": (
        FakeResponse(text="Fjords are long, narrow", chunk_size=5, cut=True),
        "Fjords are long, narrow",
        "the model server closed the connection mid-answer",
    ),
    "idle-timeout": (
        FakeResponse(text="never sent", delay=60),
        "",
        "The model stopped responding (nothing for 0.5 s).",
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_reply_is_stored_shown_by_both_history_apis_and_retried(setup: Setup, failure: str) -> None:
    script, streamed, error_start = FAILURES[failure]
    client, server = setup.client, setup.server
    if script is None:
        setup.service.model = OpenAIChatModel("gpt-test", base_url=_closed_port_url(), api_key=API_KEY, max_retries=0)
    else:
        server.enqueue(script)
    if failure == "idle-timeout":
        setup.service.model_timeout = 0.5  # the server waits 60 s before its first chunk

    response = await client.post("/api/chat", json={"id": "t1", "messages": [USER]})
    chunks = _chunks(response)
    # The stream still ends with the AI SDK error chunk; just before it, the reply's metadata says what failed.
    error = chunks[-1]["errorText"]
    assert chunks[-1] == {"type": "error", "errorText": error} and error.startswith(error_start)
    assert chunks[-2] == {"type": "message-metadata", "messageMetadata": {"chatkeep": {"error": error}}}
    reply_id = chunks[0]["messageId"]
    assert API_KEY not in response.text and "Traceback" not in response.text

    # useChat's history: the prompt and the failed reply, with what was streamed and why it failed.
    prompt, reply = (await client.get("/api/chat/t1/messages")).json()
    assert prompt == USER
    assert reply["id"] == reply_id and reply["role"] == "assistant"
    assert _text(reply) == streamed
    assert reply["metadata"] == {"chatkeep": {"error": error}}
    # assistant-ui's history: the same message, with its status.
    rows = (await client.get("/api/threads/t1/messages")).json()
    assert [(r["id"], r["parent_id"], r["status"]) for r in rows] == [
        ("u1", None, "complete"),
        (reply_id, "u1", "error"),
    ]
    assert rows[1]["content"] == {k: v for k, v in reply.items() if k != "id"}

    # assistant-ui writes back every reply it was streamed, failed ones too: its copy does not erase the failure.
    append = {"id": reply_id, "parent_id": "u1", "format": "ai-sdk/v6", "content": rows[1]["content"]}
    assert (await client.post("/api/threads/t1/messages", json=append)).status_code == 204
    assert (await client.get(f"/api/threads/t1/messages/{reply_id}")).json()["status"] == "error"

    # Retry: regenerate the reply to the same prompt. The model server is fine again.
    setup.service.model, setup.service.model_timeout = setup.model, 10
    server.reset()
    server.enqueue(FakeResponse(text="Fjords are sea inlets carved by glaciers."))
    retry = _chunks(
        await client.post("/api/chat", json={"id": "t1", "messages": [USER], "trigger": "regenerate-message"})
    )
    assert retry[-1]["type"] == "finish"
    assert server.requests[0]["messages"] == [{"role": "user", "content": "Tell me about fjords"}]
    new_id = retry[0]["messageId"]
    rows = (await client.get("/api/threads/t1/messages")).json()
    assert [(r["id"], r["parent_id"], r["status"]) for r in rows] == [
        ("u1", None, "complete"),
        (reply_id, "u1", "error"),  # kept: the new reply is its sibling
        (new_id, "u1", "complete"),
    ]
    prompt, reply = (await client.get("/api/chat/t1/messages")).json()
    assert reply["id"] == new_id and _text(reply) == "Fjords are sea inlets carved by glaciers."
    assert "metadata" not in reply


async def test_the_conversation_goes_on_after_a_failed_reply(setup: Setup) -> None:
    """useChat sends the failed reply back as it built it from the stream; the model sees what was said of it,
    not its error."""
    setup.server.enqueue(FakeResponse(text="Fjords are long, narrow", chunk_size=5, cut=True))
    _chunks(await setup.client.post("/api/chat", json={"id": "t1", "messages": [USER]}))
    prompt, failed = (await setup.client.get("/api/chat/t1/messages")).json()

    setup.server.reset()
    setup.server.enqueue(FakeResponse(text="Norway has many."))
    follow_up = {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Where?"}]}
    body = {"id": "t1", "messages": [prompt, failed, follow_up]}
    assert _chunks(await setup.client.post("/api/chat", json=body))[-1]["type"] == "finish"
    assert setup.server.requests[0]["messages"] == [
        {"role": "user", "content": "Tell me about fjords"},
        {"role": "assistant", "content": "Fjords are long, narrow"},
        {"role": "user", "content": "Where?"},
    ]


@pytest.mark.node
async def test_the_real_ai_sdk_clients_build_the_stored_failed_reply(store: ChatStore, tmp_path: Path) -> None:
    """useChat's copy of a failed reply is the stored one, with ai 5, 6 and 7 (strict and latest): so it can be sent
    back as it is, and a reload shows what the user saw."""

    async def failing(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        if last_user_text(request) == "say something":
            yield "Half an ans"
        raise ModelError("the model server failed (HTTP 500)", status=500)

    app = create_app(Settings(migrate_on_start=False), store=store, chat=ChatService(store, FunctionModel(failing)))
    cases: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as client:
        for name, text in (("partial", "say something"), ("empty", "say nothing")):
            prompt = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
            chunks = _chunks(await client.post("/api/chat", json={"id": name, "messages": [prompt]}))
            stored = (await client.get(f"/api/chat/{name}/messages")).json()[1]
            cases[name] = {"chunks": chunks, "stored": stored}
    assert _text(cases["partial"]["stored"]) == "Half an ans" and cases["empty"]["stored"]["parts"] == []
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    js = Path(__file__).parent / "js"
    node = await asyncio.create_subprocess_exec(
        "node", "failed-reply-clients.mjs", str(tmp_path / "cases.json"), cwd=js,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(node.communicate(), 120))[0].decode()
    assert node.returncode == 0, output
    assert output.strip().splitlines()[-1] == "12 passed, 0 failed"
