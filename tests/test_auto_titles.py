"""Threads made through the API get a title by themselves, after their first reply (``CHATKEEP_AUTO_TITLE``).

Through HTTP, on both databases: a ``useChat``-style ``POST /api/chat`` on a new thread, and assistant-ui's way (a
thread made with ``POST /api/threads``, messages appended through the history API), each end up titled, in the
background, with plain text of at most 80 characters however much Markdown the first message or the model's
title holds. A title a client set is never overwritten, even one set while chatkeep was making its own; a
client's ``POST /api/threads/{id}/title`` gets the title being made instead of a second one; a thread is titled
once; the setting off, nothing is titled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.providers.base import ModelError, ModelEvent, ModelRequest
from chatkeep.providers.function import FunctionModel, last_user_text
from chatkeep.settings import Settings
from chatkeep.store import ChatStore

MARKDOWN_PROMPT = (
    "## **Plan** a `weekend` trip to [the *Norwegian* fjords](https://example.com/fjords) please\n\n"
    "> with the kids\n\n- by train\n- by ferry\n\n```python\nprint('hi')\n```"
)

App = Callable[..., Awaitable[tuple[httpx.AsyncClient, ChatService]]]


@pytest.fixture
async def app_for(store: ChatStore) -> AsyncIterator[App]:
    """``await app_for(model=None, auto_title=True)``: a client of chatkeep (the demo model by default) and its chat
    service, with automatic titles as the setting says."""
    clients: list[httpx.AsyncClient] = []

    async def make(model: Any = None, *, auto_title: bool = True) -> tuple[httpx.AsyncClient, ChatService]:
        settings = Settings(migrate_on_start=False, auto_title=auto_title)
        app = create_app(settings, store=store, chat=ChatService(store, model) if model is not None else None)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test")
        clients.append(client)
        service: ChatService = app.state.chatkeep.chat
        return client, service

    yield make
    for client in clients:
        await client.aclose()


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


async def chat(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    events = [e for e in response.text.split("\n\n") if e and e != "data: [DONE]"]
    return [json.loads(e.removeprefix("data: ")) for e in events]


async def title_of(client: httpx.AsyncClient, thread_id: str) -> str | None:
    response = await client.get(f"/api/threads/{thread_id}")
    assert response.status_code == 200, response.text
    title: str | None = response.json()["title"]
    return title


async def eventually_titled(client: httpx.AsyncClient, thread_id: str) -> str:
    """The thread's title, polled until it has one (the title is made in the background); bounded."""
    for _ in range(500):
        title = await title_of(client, thread_id)
        if title:
            return title
        await asyncio.sleep(0.01)
    raise AssertionError(f"thread {thread_id} got no title")


def is_plain_one_line(title: str) -> bool:
    return len(title) <= 80 and "\n" not in title and not any(c in title for c in '*_`#[]()>"')


class TitleModel:
    """A model that answers chat requests with a fixed reply and title requests (they start with chatkeep's
    system prompt) with ``title`` (or by failing); it counts the title requests, and can hold them until
    :attr:`release` is set."""

    def __init__(self, title: str | None, *, hold: bool = False) -> None:
        self.title = title
        self.title_requests = 0
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.model = FunctionModel(self._answer, name="test-titles")

    async def _answer(self, request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        if request.messages[0].role != "system":
            yield f"About {last_user_text(request)[:20]}: lots to say."
            return
        self.title_requests += 1
        self.asked.set()
        await self.release.wait()
        if self.title is None:
            raise ModelError("the model server is overloaded", status=529)
        yield self.title


class TestUseChat:
    async def test_a_new_thread_is_titled_after_its_first_reply_in_plain_text(self, app_for: App) -> None:
        client, _ = await app_for()  # the demo model: the first words of the first message
        await chat(client, {"id": "t1", "messages": [user(MARKDOWN_PROMPT)]})
        title = await eventually_titled(client, "t1")
        assert title == "Plan a weekend trip to the…"
        assert is_plain_one_line(title)

    async def test_the_models_title_is_reduced_to_plain_text(self, app_for: App) -> None:
        markdown_title = (
            '# "**Title:** A _weekend_ in the [Norwegian fjords](https://x.test): trains, ferries, `cabins`, '
            'budgets, packing lists and a day-by-day plan for the whole family"\n\nI hope this helps!'
        )
        model = TitleModel(markdown_title)
        client, _ = await app_for(model.model)
        await chat(client, {"id": "t1", "messages": [user("Plan a trip")]})
        title = await eventually_titled(client, "t1")
        assert title.startswith("A weekend in the Norwegian fjords: trains, ferries, cabins, budgets")
        assert title.endswith("…") and is_plain_one_line(title)
        assert model.title_requests == 1

    async def test_a_model_that_fails_falls_back_to_the_first_words(self, app_for: App) -> None:
        client, _ = await app_for(TitleModel(None).model)
        await chat(client, {"id": "t1", "messages": [user("**Why** is the sky blue at noon but red at dusk?")]})
        assert await eventually_titled(client, "t1") == "Why is the sky blue at…"

    async def test_a_thread_is_titled_once(self, app_for: App) -> None:
        model = TitleModel("Sky colours")
        client, service = await app_for(model.model)
        await chat(client, {"id": "t1", "messages": [user("Why is the sky blue?")]})
        assert await eventually_titled(client, "t1") == "Sky colours"
        # The user clears it: later replies do not title the thread again.
        assert (await client.patch("/api/threads/t1", json={"title": None})).status_code == 200
        await chat(client, {"id": "t1", "message": user("And at dusk?", "u2")})
        await service.wait_idle()
        assert await title_of(client, "t1") is None
        assert model.title_requests == 1

    @pytest.mark.parametrize("auto_title", [True, False])
    async def test_the_setting_turns_it_off(self, app_for: App, auto_title: bool) -> None:
        client, service = await app_for(auto_title=auto_title)
        await chat(client, {"id": "t1", "messages": [user("Plan a weekend trip")]})
        await service.wait_idle()
        assert await title_of(client, "t1") == ("Plan a weekend trip" if auto_title else None)


class TestClientTitlesWin:
    async def test_a_title_set_while_chatkeep_makes_one_is_kept(self, app_for: App) -> None:
        model = TitleModel("Chatkeep's title", hold=True)
        client, service = await app_for(model.model)
        await chat(client, {"id": "t1", "messages": [user("Plan a trip")]})  # the reply is not held
        await asyncio.wait_for(model.asked.wait(), 10)  # chatkeep is making its title now
        assert (await client.patch("/api/threads/t1", json={"title": "My trip"})).status_code == 200
        model.release.set()
        await service.wait_idle()
        assert await title_of(client, "t1") == "My trip"

    async def test_a_thread_created_with_a_title_keeps_it(self, app_for: App) -> None:
        model = TitleModel("Chatkeep's title")
        client, service = await app_for(model.model)
        created = await client.post("/api/threads", json={"title": "Given"})
        thread = created.json()["id"]
        await chat(client, {"id": thread, "messages": [user("Plan a trip")]})
        await service.wait_idle()
        assert await title_of(client, thread) == "Given"
        assert model.title_requests == 0

    async def test_a_clients_title_request_gets_the_title_being_made(self, app_for: App) -> None:
        """assistant-ui's ``generateTitle`` (and the chat page) ask as the first reply ends: they get chatkeep's
        title, made once."""
        model = TitleModel("Trip planning", hold=True)
        client, _ = await app_for(model.model)
        await chat(client, {"id": "t1", "messages": [user("Plan a trip")]})
        await asyncio.wait_for(model.asked.wait(), 10)  # chatkeep is making its title now
        asked = asyncio.create_task(client.post("/api/threads/t1/title"))
        await asyncio.sleep(0.05)  # let the request reach the title endpoint (if it does not, nothing changes)
        model.release.set()
        response = await asked
        assert response.status_code == 200 and response.json() == {"title": "Trip planning"}
        assert (await client.post("/api/threads/t1/title")).json() == {"title": "Trip planning"}
        assert model.title_requests == 1


class TestAssistantUi:
    async def test_a_thread_written_through_the_history_api_is_titled(self, app_for: App) -> None:
        """assistant-ui with its own chat backend: ``initialize`` makes the thread, the run's messages are appended
        when it settles; the first reply appended has the thread titled."""
        client, service = await app_for()
        thread = (await client.post("/api/threads", json={"localId": "__LOCALID_abc1234"})).json()["id"]
        first = {"role": "user", "parts": [{"type": "text", "text": "> **Quote** of the day, please"}]}
        rows = [
            {"id": "u1", "parent_id": None, "format": "ai-sdk/v6", "content": first},
            {"id": "a1", "parent_id": "u1", "format": "ai-sdk/v6", "content": {"role": "assistant", "parts": []}},
        ]
        assert (await client.post(f"/api/threads/{thread}/messages", json=rows[0])).status_code == 204
        await service.wait_idle()
        assert await title_of(client, thread) is None  # a user message alone is no reply yet
        assert (await client.post(f"/api/threads/{thread}/messages", json=rows[1])).status_code == 204
        assert await eventually_titled(client, thread) == "Quote of the day, please"


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ('"Trip to Oslo."', "Trip to Oslo"),
        ("Title: **Trip** to `Oslo`", "Trip to Oslo"),
        ("“Fjords & ferries”", "Fjords & ferries"),
        ("![a map](map.png) of [Bergen](https://x.test)", "a map of Bergen"),
        ("```\ncode only\n```", "code only"),
        ("word " * 40, ("word " * 15).strip() + " word…"),
    ],
)
def test_plain_title(text: str, title: str) -> None:
    from chatkeep.chat.titles import plain_title  # here: only this test needs it

    assert plain_title(text) == title
    assert len(plain_title(text)) <= 80
