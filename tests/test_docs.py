"""The API docs at ``/docs`` work with no internet: every asset the page names is served by chatkeep itself (a
real ``chatkeep serve``), Swagger UI renders the operations in Chromium with every request beyond the server
refused, under a Content-Security-Policy that allows scripts from the server only (and the page's one inline script
by its hash); and neither the page nor the schema shows a secret of the configuration."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Route, async_playwright

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import Server, running_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(f"sqlite:///{tmp_path_factory.mktemp('docs') / 'docs.db'}") as server:
        yield server


def _referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


def test_the_page_names_only_local_assets_and_they_are_served(served: Server) -> None:
    page = httpx.get(f"{served.url}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = _referenced(page.text)
    assert len(urls) >= 4  # the script, the stylesheet, the icon, the schema
    for url in urls:
        assert urlsplit(url).netloc == "" and url.startswith("/"), url
        asset = httpx.get(served.url + url)
        assert asset.status_code == 200 and len(asset.content) > 0, url
    assert "http" not in page.text.replace(served.url, "")  # no CDN, no validator, no font service
    # the CSP: scripts from the server, and the inline start-up script by its hash only
    policy = dict(directive.strip().split(" ", 1) for directive in page.headers["content-security-policy"].split(";"))
    [inline] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["connect-src"] == "'self'" and policy["default-src"] == "'self'"
    assert httpx.get(f"{served.url}/redoc").status_code == 404  # ReDoc needed a CDN and Google Fonts: not served


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (scripts/test does it)")
    return CHROMIUM


@pytest.mark.browser
async def test_swagger_ui_renders_with_no_internet(served: Server, chromium: str) -> None:
    beyond: list[str] = []
    problems: list[str] = []

    async def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            beyond.append(route.request.url)
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.route("**/*", offline)
            await page.goto(f"{served.url}/docs")
            await page.locator(".opblock").first.wait_for()
            operations = await page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            await browser.close()
    assert any("/api/chat" in op for op in operations), operations
    assert beyond == [] and problems == []


@pytest.fixture
def make_app(store: ChatStore) -> Callable[[Settings], httpx.AsyncClient]:
    def make(settings: Settings) -> httpx.AsyncClient:
        app = create_app(settings, store=store)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")

    return make


async def test_neither_docs_nor_schema_show_a_secret(make_app: Callable[[Settings], httpx.AsyncClient]) -> None:
    secrets = {
        "database_url": "postgres://me:db-password-1@db.example/chats",
        "jwt_secret": "jwt-secret-2",
        "redis_url": "redis://:redis-password-3@127.0.0.1:1/0",
    }
    settings = Settings(migrate_on_start=False, **secrets)  # type: ignore[arg-type]
    client = make_app(settings)
    async with client:
        for path in ("/docs", "/openapi.json"):
            shown = (await client.get(path, headers={"authorization": "Bearer x"})).text
            for secret in ("db-password-1", "jwt-secret-2", "redis-password-3"):
                assert secret not in shown, (path, secret)
