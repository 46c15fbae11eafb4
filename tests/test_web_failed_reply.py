"""The chat page, in Chromium against a real ``chatkeep serve``: a reply the model server fails is shown as what it
is, live and after a reload (what streamed before the failure, the stored error text, a Retry that makes a sibling
reply), and a new thread's automatic title shows in the sidebar as soon as the first reply ends, without a reload.
The real model here is the local fake OpenAI-compatible server of tests/fake_openai.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from tests._browser import assistant, send
from tests._server import running_server
from tests.fake_openai import FakeOpenAI, FakeResponse

pytestmark = pytest.mark.browser

#: what chatkeep stores as the error of a reply whose model server dropped the connection mid-answer
CUT_ERROR = "the model server closed the connection mid-answer"


@pytest.fixture
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def test_a_failed_reply_shows_its_text_and_error_after_a_reload_and_retry_makes_a_sibling(
    page: Page, model_server: FakeOpenAI, tmp_path: Path
) -> None:
    errors = console_errors(page)
    # The partial text carries HTML: it and the error note must stay text.
    partial = "Fjords are <b>long</b>, narrow"
    model_server.enqueue(FakeResponse(text=partial, chunk_size=5, cut=True))
    database = f"sqlite:///{tmp_path / 'failed.db'}"
    with running_server(database, env=model_server.env(), args=["--model", "openai:test-model"]) as server:
        await page.goto(server.url + "/")
        await send(page, "Tell me about fjords")

        # Live: the failed reply keeps what streamed, and says why it failed (the banner may show too).
        reply = assistant(page).last
        note = reply.get_by_test_id("message-error")
        await expect(note).to_contain_text(CUT_ERROR)
        await expect(reply.get_by_test_id("message-text")).to_have_text(partial)
        await expect(page).to_have_url(re.compile(r"/chat/[^/]+$"))
        thread_id = page.url.rsplit("/", 1)[-1]
        async with httpx.AsyncClient(base_url=server.url) as client:
            stored = (await client.get(f"/api/chat/{thread_id}/messages")).json()
        error = stored[-1]["metadata"]["chatkeep"]["error"]
        assert error.startswith(CUT_ERROR)

        # After a reload: the same reply, its partial text, the stored error text, and a Retry on it.
        await page.reload()
        reply = assistant(page).last
        await expect(reply.get_by_test_id("message-text")).to_have_text(partial)
        await expect(reply.locator("b")).to_have_count(0)
        await expect(reply.get_by_test_id("message-error-text")).to_have_text(error)
        await expect(reply.get_by_test_id("message-status")).to_have_text("Failed")
        await expect(page.get_by_test_id("error-banner")).to_have_count(0)

        # Retry: the model server answers this time; the new reply is a sibling of the failed one (2/2). Then the
        # page asks for the thread's title (the thread's first reply that did not fail).
        answer = "Fjords are sea inlets carved by glaciers."
        model_server.enqueue(FakeResponse(text=answer), FakeResponse(text="Fjords"))
        await reply.get_by_test_id("message-retry").click()
        reply = assistant(page).last
        await expect(reply.get_by_test_id("message-text")).to_have_text(answer)
        await expect(reply.get_by_test_id("branch-label")).to_have_text("2/2")
        await expect(page.get_by_test_id("message-error")).to_have_count(0)
        await expect(page.get_by_test_id("thread-title")).to_have_text(["Fjords"])

        # The failed one is kept, one click away, with its note.
        await reply.get_by_test_id("branch-prev").click()
        reply = assistant(page).last
        await expect(reply.get_by_test_id("branch-label")).to_have_text("1/2")
        await expect(reply.get_by_test_id("message-error-text")).to_have_text(error)
        await expect(reply.get_by_test_id("message-text")).to_have_text(partial)
    assert [len(r["messages"]) for r in model_server.requests] == [1, 1, 3]  # the reply, the retry, the title
    assert errors == []


async def test_the_automatic_title_shows_in_the_sidebar_when_the_first_reply_ends(
    page: Page, model_server: FakeOpenAI, tmp_path: Path
) -> None:
    errors = console_errors(page)
    model_server.enqueue(
        FakeResponse(text="Fjords are sea inlets carved by glaciers."),
        FakeResponse(text='"**Fjords** of Norway"'),  # the title the model is asked for: chatkeep makes it plain
    )
    database = f"sqlite:///{tmp_path / 'titled.db'}"
    env = {**model_server.env(), "CHATKEEP_AUTO_TITLE": "true"}
    with running_server(database, env=env, args=["--model", "openai:test-model"]) as server:
        await page.goto(server.url + "/")
        await send(page, "Tell me about fjords")
        await expect(assistant(page).last.get_by_test_id("message-text")).to_have_text(
            "Fjords are sea inlets carved by glaciers."
        )
        # No reload: the sidebar and the top bar show the title once it is made.
        await expect(page.get_by_test_id("thread-title")).to_have_text(["Fjords of Norway"])
        await expect(page.get_by_test_id("chat-title")).to_have_text("Fjords of Norway")
    # One reply, one title: the page's request for a title got the one chatkeep was making, not a second.
    assert len(model_server.requests) == 2
    assert errors == []
