"""The prompts an empty chat offers a first-time user (issue #13, point 10): the model's own, which the server puts
in the page's ``<meta name="chatkeep-suggestions">``. The demo model's set off the behaviours their labels name;
a model without ``suggestions`` (an OpenAI-compatible one, your own) offers none. The browser side is in
tests/test_web_page.py."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from chatkeep.api.app import create_app
from chatkeep.chat.service import ChatService
from chatkeep.providers.base import ModelEvent, ModelRequest, PromptSuggestion
from chatkeep.providers.demo import DemoModel
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.test_chat import post_chat, user


def offered(page: str) -> list[dict[str, str]] | None:
    """The suggestions in the page's <meta> tag, or None without one."""
    match = re.search(r'<meta name="chatkeep-suggestions" content="([^"]*)" />', page)
    return None if match is None else json.loads(html.unescape(match.group(1)))


async def test_the_page_offers_the_demo_models_suggestions(client: httpx.AsyncClient) -> None:
    for path in ("/", "/chat/some-thread"):
        response = await client.get(path)
        assert response.status_code == 200
        assert offered(response.text) == [{"label": s.label, "prompt": s.prompt} for s in DemoModel().suggestions]


async def test_each_demo_suggestion_sets_off_what_it_says(client: httpx.AsyncClient) -> None:
    tool, think_and_cite, markdown, long_reply = DemoModel().suggestions
    for number, suggestion in enumerate(DemoModel().suggestions):
        chunks = await post_chat(client, {"id": f"t{number}", "messages": [user(suggestion.prompt)]})
        types = [c["type"] for c in chunks]
        text = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
        if suggestion == tool:
            call = next(c for c in chunks if c["type"] == "tool-input-available")
            assert call["toolName"] == "get_weather" and call["input"] == {"city": "Paris"}
            assert "tool-output-available" in types and text.startswith("The weather in Paris is")
        elif suggestion == think_and_cite:
            assert "reasoning-start" in types and "source-url" in types
        elif suggestion == markdown:
            assert "```python\n" in text and "**bold**" in text
        else:
            assert suggestion == long_reply
            assert text == " ".join(str(n) for n in range(1, 301))


class Suggesting:
    """A model of one's own that offers prompts of its own."""

    name = "suggesting"

    def __init__(self, suggestions: Sequence[PromptSuggestion]) -> None:
        self.suggestions = suggestions

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        async for event in DemoModel(delay_ms=0).stream(request):
            yield event


async def test_a_model_offers_its_own_suggestions_or_none(store: ChatStore) -> None:
    async def echo(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
        yield "hi"

    mine = (PromptSuggestion('Quotes "and" <tags>', "Say <b>hi</b> & 'bye'\n"),)
    cases: list[tuple[Any, list[dict[str, str]] | None]] = [
        (FunctionModel(echo), None),
        (Suggesting(mine), [{"label": 'Quotes "and" <tags>', "prompt": "Say <b>hi</b> & 'bye'\n"}]),
        (Suggesting(()), None),
    ]
    for model, expected in cases:
        app = create_app(Settings(migrate_on_start=False), store=store, chat=ChatService(store, model))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as c:
            assert offered((await c.get("/")).text) == expected
