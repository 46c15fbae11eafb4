"""chatkeep as a library: the URLs users paste, the OpenAPI document, mounting the routers into your own
FastAPI app with your own authentication, and tools made from plain functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from chatkeep import ChatStore, create_app, get_current_user, include_chatkeep
from chatkeep.errors import DatabaseMisconfigured
from chatkeep.settings import Settings
from chatkeep.store import normalize_database_url
from chatkeep.tools import tool


class TestDatabaseUrls:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("postgres://u:p@db:5432/chats", "postgresql+asyncpg://u:p@db:5432/chats"),
            ("postgresql://u@db/chats", "postgresql+asyncpg://u@db/chats"),
            ("postgresql+psycopg2://u@db/chats", "postgresql+asyncpg://u@db/chats"),
            ("postgres://u@db/chats?sslmode=require", "postgresql+asyncpg://u@db/chats?ssl=require"),
            ("postgres://u@db/chats?sslmode=require&channel_binding=require", "postgresql+asyncpg://u@db/chats?ssl=require"),
            ("sqlite:///chatkeep.db", "sqlite+aiosqlite:///chatkeep.db"),
            ("sqlite:////var/lib/chats.db", "sqlite+aiosqlite:////var/lib/chats.db"),
            ("data/chats.db", "sqlite+aiosqlite:///data/chats.db"),
            ("  sqlite:///x.db  ", "sqlite+aiosqlite:///x.db"),
        ],
    )  # fmt: skip
    def test_pasted_urls_get_an_async_driver(self, raw: str, expected: str) -> None:
        assert normalize_database_url(raw).render_as_string(hide_password=False) == expected

    @pytest.mark.parametrize("raw", ["mysql://root@localhost/x", "mongodb://x", "oracle://scott@db/orcl"])
    def test_other_databases_are_a_clear_error(self, raw: str) -> None:
        with pytest.raises(DatabaseMisconfigured, match="unsupported database"):
            normalize_database_url(raw)


async def test_openapi_describes_every_route(store: ChatStore) -> None:
    app = create_app(Settings(migrate_on_start=False), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
    paths = set(spec["paths"])
    for path in (
        "/api/threads", "/api/threads/{thread_id}", "/api/threads/{thread_id}/title",
        "/api/threads/{thread_id}/messages", "/api/threads/{thread_id}/messages/{message_id}", "/api/chat",
        "/api/chat/{thread_id}/messages", "/api/chat/{thread_id}/stream", "/api/chat/{thread_id}/stop",
    ):  # fmt: skip
        assert path in paths, path
    body = spec["paths"]["/api/threads/{thread_id}/messages"]["post"]["requestBody"]
    assert "MessageIn" in str(body)


@pytest.fixture
async def host_app(store: ChatStore) -> AsyncIterator[FastAPI]:
    """Someone's own FastAPI app, with its own session header, mounting chatkeep under /chat-api."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    async def session_user(request: Request) -> str:
        user = request.headers.get("x-session-user")
        if not user:
            from fastapi import HTTPException

            raise HTTPException(401, "sign in first")
        return user

    include_chatkeep(app, store, settings=Settings(migrate_on_start=False), prefix="/chat-api")
    app.dependency_overrides[get_current_user] = session_user
    yield app
    await app.state.chatkeep.chat.close()


async def test_mounted_routers_use_the_host_apps_auth(host_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=host_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/hello")).json() == {"hello": "world"}
        assert (await client.get("/chat-api/threads")).status_code == 401
        alice = {"x-session-user": "alice"}
        created = await client.post("/chat-api/threads", json={"title": "mine"}, headers=alice)
        assert created.status_code == 201
        assert [t["title"] for t in (await client.get("/chat-api/threads", headers=alice)).json()] == ["mine"]
        assert (await client.get("/chat-api/threads", headers={"x-session-user": "bob"})).json() == []
        thread = created.json()["id"]
        assert (await client.get(f"/chat-api/threads/{thread}", headers={"x-session-user": "bob"})).status_code == 404


class Query(BaseModel):
    """What to look up."""

    term: str
    limit: int = 5


class TestToolDecorator:
    def test_schema_from_parameters_and_docstring(self) -> None:
        @tool
        async def book(city: str, nights: int = 1) -> str:
            """Book a hotel."""
            return f"{city}:{nights}"

        spec = book.spec()
        assert spec.name == "book" and spec.description == "Book a hotel."
        assert spec.input_schema["properties"]["city"]["type"] == "string"
        assert spec.input_schema["required"] == ["city"]

    async def test_schema_from_a_pydantic_model_and_validation(self) -> None:
        @tool(name="lookup", description="Look things up.")
        def lookup(query: Query) -> dict[str, object]:
            return {"term": query.term, "limit": query.limit}

        assert lookup.spec().input_schema["properties"]["limit"]["default"] == 5
        assert await lookup.run({"term": "x"}) == {"term": "x", "limit": 5}
        from chatkeep.tools import ToolError

        with pytest.raises(ToolError, match="term: Field required"):
            await lookup.run({})

    def test_unresolvable_hints_are_a_clear_error(self) -> None:
        class Local(BaseModel):
            x: int

        def f(value: Local) -> None:
            """Uses a class defined inside a function."""

        with pytest.raises(TypeError, match="define the types it uses at module level"):
            tool(f)


def test_the_wheel_carries_the_page_and_the_migrations(tmp_path: Path) -> None:
    """Running chatkeep from a wheel needs no Node and no repository: the built page, the Alembic environment and
    every revision are inside it."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parent.parent
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("chatkeep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "chatkeep/web/dist/index.html" in names
    assert any(n.startswith("chatkeep/web/dist/assets/") and n.endswith(".js") for n in names)
    assert {
        "chatkeep/store/migrations/env.py",
        "chatkeep/store/migrations/script.py.mako",
        "chatkeep/py.typed",
    } <= names
    revisions = {p.name for p in (root / "src/chatkeep/store/migrations/versions").glob("*.py")}
    assert {n.rsplit("/", 1)[1] for n in names if "/migrations/versions/" in n} == revisions
