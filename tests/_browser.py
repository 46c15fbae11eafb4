"""What the browser tests share (tests/test_web*.py; a pytest plugin, see tests/conftest.py): a real ``chatkeep
serve``, Debian's Chromium driven by Playwright (headless, no browser download), and a few helpers. Screenshots of
the main states go to test-artifacts/screenshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, ViewportSize, async_playwright

from tests._server import Server, running_server

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SECRET = "a-secret-for-the-browser-tests-only"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``chatkeep serve`` with the demo model, without authentication, for the tests of one module. Module-scoped,
    it starts before conftest's per-test environment applies, so it says itself that no title appears by itself
    (the tests that want one start a server of their own with ``CHATKEEP_AUTO_TITLE=true``)."""
    database = f"sqlite:///{tmp_path_factory.mktemp('web') / 'web.db'}"
    env = {"CHATKEEP_DEMO_DELAY_MS": "15", "CHATKEEP_AUTO_TITLE": "false"}
    with running_server(database, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (scripts/test does it)")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )  # fmt: skip
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport=DESKTOP)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    p = await context.new_page()
    p.set_default_timeout(15_000)
    yield p


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def assistant(page: Page) -> Locator:
    return page.locator('[data-testid="message"][data-role="assistant"]')


async def send(page: Page, text: str) -> None:
    composer = page.get_by_test_id("composer")
    await composer.fill(text)
    await composer.press("Enter")


def last_reply_text(page: Page) -> Locator:
    return page.locator('[data-testid="message"][data-role="assistant"]').last.get_by_test_id("message-text")


async def stored_thread(server: Server, *messages: dict[str, Any]) -> str:
    """A thread holding these UIMessages (ai-sdk/v6 content), stored through the history API, each a child of the
    one before."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        response = await client.post("/api/threads")
        assert response.status_code == 201, response.text
        thread_id: str = response.json()["id"]
        parent = None
        for number, content in enumerate(messages):
            row = {"id": f"m{number}", "parent_id": parent, "format": "ai-sdk/v6", "content": content}
            response = await client.post(f"/api/threads/{thread_id}/messages", json=row)
            assert response.status_code == 204, response.text
            parent = row["id"]
    return thread_id


def user_message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def assistant_message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "step-start"}, *parts]}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "state": "done"}
