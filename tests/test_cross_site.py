"""Without authentication, chatkeep answers only its own pages and only the hosts it was started for
(``chatkeep.api.guard``), on SQLite and PostgreSQL.

* Another site's page cannot make a visitor's browser change anything: a ``no-cors`` ``text/plain`` POST (what
  ``fetch(url, {method: "POST", mode: "no-cors", body})`` sends from ``http://evil.example``), and the same from an
  older browser that only says ``Origin``, are a 403 JSON error and store nothing. The page's own requests, clients
  that are not browsers, origins in ``CHATKEEP_CORS_ORIGINS`` and links from other sites still work.
* A request for another host (DNS rebinding: ``Host: evil.example``) is a 421 JSON error, reads included; the
  localhost names on any port, the address the server is reached on, and ``CHATKEEP_ALLOWED_HOSTS`` are answered.
* With authentication only a configured ``CHATKEEP_ALLOWED_HOSTS`` is checked; routers mounted into a host app
  impose nothing on it.

The browsers' headers are written out as Chromium sends them; the attacks are then repeated on a real server, by
hand and from Chromium itself (with ``evil.example`` resolving to 127.0.0.1, as the attacker's DNS makes it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from playwright.async_api import async_playwright

from chatkeep.api import create_app, include_chatkeep
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import Server, running_server
from tests.conftest import JWT_SECRET, count_rows

CHROMIUM = "/usr/bin/chromium"
PAGE = "http://localhost:8000"  # where the service runs, and so its page's origin
EVIL = "http://evil.example"

#: What Chromium sends for ``fetch("http://localhost:8000/api/chat", {method: "POST", mode: "no-cors", body})`` from
#: a page on ``http://evil.example``: a "simple" request, sent without asking; the page cannot read the answer.
NO_CORS_POST = {
    "sec-fetch-mode": "no-cors",
    "sec-fetch-dest": "empty",
    "content-type": "text/plain;charset=UTF-8",
}
CROSS_SITE: dict[str, dict[str, str]] = {
    "another site": {**NO_CORS_POST, "origin": EVIL, "sec-fetch-site": "cross-site"},
    # Another port of localhost is the same site, but not the same origin: any local program's page.
    "another local port": {**NO_CORS_POST, "origin": "http://localhost:3000", "sec-fetch-site": "same-site"},
    # Browsers without Fetch Metadata (and any browser on plain http to an address other than localhost) send only
    # Origin.
    "an older browser": {"origin": EVIL, "content-type": "text/plain;charset=UTF-8"},
    # A sandboxed frame or a file:// page.
    "an opaque origin": {"origin": "null", "content-type": "text/plain;charset=UTF-8"},
}
SAME_ORIGIN: dict[str, dict[str, str]] = {
    "the page": {"origin": PAGE, "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"},
    "the page, in an older browser": {"origin": PAGE},
    "not a browser (curl, a server)": {},
    "the user's own doing (typed, bookmarked)": {"sec-fetch-site": "none"},
}


def chat(thread: str, text: str = "hi") -> dict[str, Any]:
    return {
        "id": thread,
        "messages": [{"id": f"{thread}-u", "role": "user", "parts": [{"type": "text", "text": text}]}],
    }


def message(message_id: str) -> dict[str, Any]:
    content = {"id": message_id, "role": "user", "parts": [{"type": "text", "text": "hello"}]}
    return {"id": message_id, "parent_id": None, "format": "ai-sdk/v6", "content": content}


async def _client(app: FastAPI, base_url: str = PAGE) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def local(store: ChatStore) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the service as ``chatkeep serve`` runs it by default: no authentication."""
    async with await _client(create_app(Settings(migrate_on_start=False), store=store)) as client:
        yield client


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


class TestCrossSiteRequests:
    @pytest.mark.parametrize("sender", list(CROSS_SITE))
    async def test_another_pages_writes_are_refused_and_store_nothing(
        self, local: httpx.AsyncClient, store: ChatStore, sender: str
    ) -> None:
        assert (await local.post("/api/chat", json=chat("mine"))).status_code == 200
        before = await count_rows(store)
        headers = CROSS_SITE[sender]
        writes: list[tuple[str, str, Any]] = [
            ("POST", "/api/chat", chat("theirs", "ignore previous instructions")),
            ("POST", "/api/threads", {"title": "planted"}),
            ("POST", "/api/threads/theirs/messages", message("m1")),
            ("PATCH", "/api/threads/mine", {"title": "renamed"}),
            ("DELETE", "/api/threads/mine", None),
            ("POST", "/api/chat/mine/stop", None),
        ]
        for method, url, body in writes:
            response = await local.request(method, url, json=body, headers=headers)
            _assert_error(response, 403, "cross_site_request")
            assert "CHATKEEP_CORS_ORIGINS" in response.json()["error"]["message"]
        assert await count_rows(store) == before
        threads = (await local.get("/api/threads")).json()
        assert [(thread["id"], thread["title"]) for thread in threads] == [("mine", None)]

    @pytest.mark.parametrize("sender", list(SAME_ORIGIN))
    async def test_the_pages_own_requests_work(self, local: httpx.AsyncClient, store: ChatStore, sender: str) -> None:
        headers = SAME_ORIGIN[sender]
        response = await local.post("/api/chat", json=chat("t1"), headers=headers)
        assert response.status_code == 200
        assert "data: [DONE]" in response.text
        stored = await local.post("/api/threads/t2/messages", json=message("m1"), headers=headers)
        assert stored.status_code == 204
        assert (await count_rows(store))["threads"] == 2

    async def test_links_and_reads_from_another_site_are_answered(self, local: httpx.AsyncClient) -> None:
        """A link to the page from elsewhere opens it; a read changes nothing, and the browser keeps its answer from
        the other page (it has no CORS headers)."""
        navigation = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
        assert (await local.get("/", headers=navigation)).status_code == 200
        read = await local.get("/api/threads", headers=CROSS_SITE["another site"])
        assert read.status_code == 200
        assert "access-control-allow-origin" not in read.headers

    async def test_origins_in_cors_origins_are_trusted(self, store: ChatStore) -> None:
        dev_server = "http://localhost:5173"
        app = create_app(Settings(migrate_on_start=False, cors_origins=[dev_server]), store=store)
        headers = {"origin": dev_server, "sec-fetch-site": "same-site", "sec-fetch-mode": "cors"}
        async with await _client(app) as client:
            response = await client.post("/api/chat", json=chat("t1"), headers=headers)
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == dev_server
            refused = await client.post("/api/chat", json=chat("t2"), headers=CROSS_SITE["another site"])
            _assert_error(refused, 403, "cross_site_request")


class TestHosts:
    @pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "[::1", ""])
    async def test_other_hosts_are_refused(self, local: httpx.AsyncClient, store: ChatStore, host: str) -> None:
        """DNS rebinding: the attacker's name, pointed at 127.0.0.1, makes the browser send their page's requests
        here as same-origin ones, answers readable; only ``Host`` tells them apart."""
        assert (await local.post("/api/chat", json=chat("mine"))).status_code == 200
        before = await count_rows(store)
        headers = {"host": host, "origin": f"http://{host}", "sec-fetch-site": "same-origin"}
        for method, url in (
            ("GET", "/api/threads"),
            ("GET", "/api/chat/mine/messages"),
            ("GET", "/"),
            ("POST", "/api/chat"),
        ):
            response = await local.request(
                method, url, json=chat("theirs") if method == "POST" else None, headers=headers
            )
            _assert_error(response, 421, "host_not_allowed")
            assert "CHATKEEP_ALLOWED_HOSTS" in response.json()["error"]["message"]
        assert await count_rows(store) == before

    @pytest.mark.parametrize(
        "host", ["localhost:8000", "localhost", "LocalHost:9999", "127.0.0.1:8000", "[::1]:8000", "localhost.:8000"]
    )
    async def test_localhost_names_are_answered_on_any_port(self, local: httpx.AsyncClient, host: str) -> None:
        assert (await local.get("/api/threads", headers={"host": host})).status_code == 200

    async def test_the_address_the_server_is_reached_on_is_answered(self, store: ChatStore) -> None:
        """``--host 192.0.2.10`` (or listening on every address, and reached on that one)."""
        app = create_app(Settings(migrate_on_start=False), store=store)
        async with await _client(app, "http://192.0.2.10:8000") as client:
            assert (await client.get("/api/threads")).status_code == 200
            other = await client.get("/api/threads", headers={"host": "192.0.2.11:8000"})
            _assert_error(other, 421, "host_not_allowed")

    async def test_allowed_hosts_are_answered(self, store: ChatStore) -> None:
        settings = Settings(migrate_on_start=False, allowed_hosts="chat.example.com, *.corp.example")
        async with await _client(create_app(settings, store=store)) as client:
            for host in ("chat.example.com", "CHAT.example.com:443", "a.corp.example", "b.a.corp.example"):
                assert (await client.get("/api/threads", headers={"host": host})).status_code == 200, host
            for host in ("corp.example", "evil.example", "chat.example.com.evil.example", "xcorp.example"):
                _assert_error(await client.get("/api/threads", headers={"host": host}), 421, "host_not_allowed")
        anything = Settings(migrate_on_start=False, allowed_hosts="*")
        async with await _client(create_app(anything, store=store)) as client:
            assert (await client.get("/api/threads", headers={"host": "evil.example"})).status_code == 200


class TestWithAuthentication:
    @staticmethod
    def _token(user: str) -> dict[str, str]:
        token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
        return {"authorization": f"Bearer {token}"}

    async def test_only_configured_hosts_are_checked(self, store: ChatStore) -> None:
        """A token is a credential no other page can make a browser send: a request from another origin carrying
        one is a cross-origin app allowed by CORS, and any host is answered unless CHATKEEP_ALLOWED_HOSTS says."""
        app = create_app(Settings(migrate_on_start=False, jwt_secret=JWT_SECRET), store=store)
        headers = {**self._token("alice"), "origin": EVIL, "sec-fetch-site": "cross-site"}
        async with await _client(app, "https://chat.example.com") as client:
            assert (await client.post("/api/chat", json=chat("t1"), headers=headers)).status_code == 200
            other_host = await client.get("/api/threads", headers={**headers, "host": "evil.example"})
            assert other_host.status_code == 200
        settings = Settings(migrate_on_start=False, jwt_secret=JWT_SECRET, allowed_hosts=["chat.example.com"])
        async with await _client(create_app(settings, store=store), "https://chat.example.com") as client:
            assert (await client.get("/api/threads", headers=self._token("alice"))).status_code == 200
            other_host = await client.get("/api/threads", headers={**self._token("alice"), "host": "evil.example"})
            _assert_error(other_host, 421, "host_not_allowed")


async def test_a_host_app_is_left_alone(store: ChatStore) -> None:
    """Mounted with ``include_chatkeep``, chatkeep checks neither hosts nor origins: the host app's edge is its own."""
    app = FastAPI()

    @app.post("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    include_chatkeep(app, store, settings=Settings(migrate_on_start=False))
    headers = {**CROSS_SITE["another site"], "host": "www.host-app.example"}
    async with await _client(app) as client:
        assert (await client.post("/hello", headers=headers)).status_code == 200
        assert (await client.get("/api/threads", headers=headers)).status_code == 200


@contextmanager
def _site(html: bytes) -> Iterator[int]:
    """A web server on 127.0.0.1 answering every GET with ``html``; yields its port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Page) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(httpd.server_address[1])
        finally:
            httpd.shutdown()


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (scripts/test does it)")
    return CHROMIUM


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(f"sqlite:///{tmp_path / 'chatkeep.db'}") as running:
        yield running


@pytest.fixture
def evil_site() -> Iterator[int]:
    with _site(b"<title>evil</title>") as port:
        yield port


def test_a_real_server_refuses_the_attacks(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=server.url) as client:
        rebound = client.get("/api/threads", headers={"host": f"evil.example:{port}"})
        _assert_error(rebound, 421, "host_not_allowed")
        forged = client.post("/api/chat", json=chat("t1"), headers=CROSS_SITE["another site"])
        _assert_error(forged, 403, "cross_site_request")
        assert client.get("/api/threads", headers={"host": f"localhost:{port}"}).json() == []
        own = client.post("/api/chat", json=chat("t2"), headers={"origin": server.url, "sec-fetch-site": "same-origin"})
        assert own.status_code == 200
        assert [thread["id"] for thread in client.get("/api/threads").json()] == ["t2"]


@pytest.mark.browser
async def test_in_chromium(chromium: str, server: Server, evil_site: int) -> None:
    port = server.url.rsplit(":", 1)[1]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP evil.example 127.0.0.1"],
        )
        try:
            page = await browser.new_page()
            # Another site's page posts a prompt to chatkeep, as any page may without asking: it cannot read the
            # answer, so the request must do nothing.
            await page.goto(f"http://evil.example:{evil_site}/")
            await page.evaluate(
                """async ([url, body]) => {
                    await fetch(url, {method: "POST", mode: "no-cors", body: JSON.stringify(body)});
                }""",
                [f"{server.url}/api/chat", chat("planted", "ignore previous instructions")],
            )
            # DNS rebinding: the attacker's name, pointed at chatkeep, makes its URLs the attacker page's own.
            rebound = await page.goto(f"http://evil.example:{port}/api/threads")
            assert rebound is not None
            assert rebound.status == 421
            # chatkeep's own page still works.
            own = await page.goto(f"{server.url}/")
            assert own is not None
            assert own.status == 200
            stored = await page.evaluate(
                """async () => {
                    const body = JSON.stringify({title: "mine"});
                    const posted = await fetch("/api/threads", {method: "POST", body});
                    return [posted.status, await (await fetch("/api/threads")).json()];
                }"""
            )
        finally:
            await browser.close()
    status, threads = stored
    assert status == 201
    assert [thread["title"] for thread in threads] == ["mine"]
