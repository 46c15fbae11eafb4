"""Schemathesis fuzzes every operation of the app's own OpenAPI document, in-process, on SQLite and PostgreSQL.

Alice (a JWT user) sends what schemathesis generates (its examples, coverage and fuzzing phases: valid and invalid
bodies, query strings, path ids, wrong content types), a third of the cases with their path and body ids aimed at
Alice's own thread and messages, a third at Bob's. For every request:

* the status is never 5xx, it is documented in the schema, and a response body matches its documented schema
  (schemathesis's checks);
* a 4xx is the app's JSON error, ``{"error": {"code", "message", "details"?}}``, and every row of every table
  is exactly as before the request;
* Bob's rows never change, whatever Alice sends.

Deterministic (``derandomize``, no example database, no values taken from responses) and bounded, so it runs in
seconds and does not flake.

The schema is loaded at import from the app's own ``openapi()``, and the ``target`` fixture checks that the app
under test serves that very document at ``/openapi.json``. (``schemathesis.pytest.from_fixture`` fails on pytest
9's node ids, and ``from_asgi`` runs the app on schemathesis's own event loop thread, where the test database's
engine cannot follow.) Requests go to the app in-process, through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import jwt
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._dump import Dump, dump_tables, rows_of_user
from tests.conftest import JWT_SECRET

BASE_URL = "http://chatkeep.test"
#: generated cases per operation in the fuzzing phase (the examples and coverage phases add their own)
MAX_EXAMPLES = 15
#: whose ids a case is aimed at: as generated, Alice's (the caller's) or Bob's
AIMS = (None, "alice", "bob")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
_T = TypeVar("_T")


def _token(user_id: str) -> str:
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


def _settings() -> Settings:
    return Settings(jwt_secret=JWT_SECRET, migrate_on_start=False, requests_per_minute=0)


def _openapi() -> dict[str, Any]:
    """The document the app serves at ``/openapi.json`` (the ``target`` fixture checks that it still is)."""
    return create_app(_settings(), store=ChatStore.from_url("sqlite://")).openapi()


OPENAPI = _openapi()
_NO_FEEDBACK = {"extra-data-sources": {"responses": False}}
CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {
            # Cases come from the schema alone, never from ids that earlier responses returned (random ids would
            # change the cases from one run to the next). No probing of methods the API does not have: Starlette
            # answers those, with a 405 in the app's error shape.
            "examples": _NO_FEEDBACK,
            "coverage": {**_NO_FEEDBACK, "unexpected-methods": []},
            "fuzzing": {**_NO_FEEDBACK, "error-feedback": {"enabled": False}},
        }
    }
)
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


@dataclass
class Target:
    """The app under test, with an engine and an event loop of its own: Hypothesis runs each case synchronously."""

    loop: asyncio.AbstractEventLoop
    app: FastAPI
    store: ChatStore
    client: httpx.AsyncClient
    #: ``{"alice": {"thread", "message"}, "bob": {…}}``: ids that exist, for the cases aimed at them
    ids: dict[str, dict[str, str]]
    bobs_rows: Dump
    #: every row as the last request left it
    rows: Dump

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self.loop.run_until_complete(coro)

    @property
    def chat(self) -> ChatService:
        service: ChatService = self.app.state.chatkeep.chat
        return service


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "step-start"}, {"type": "text", "text": text}]}


async def _seed(client: httpx.AsyncClient, user: str) -> dict[str, str]:
    """A thread with a small tree (a user message, two replies to it, an opaque row), as ``user``."""
    headers = {"authorization": f"Bearer {_token(user)}"}
    created = await client.post("/api/threads", json={"title": f"{user}'s", "custom": {"k": 1}}, headers=headers)
    assert created.status_code == 201, created.text
    thread = str(created.json()["id"])
    for row in (
        {"id": "u1", "parent_id": None, "format": "ai-sdk/v6", "content": _user("hello")},
        {"id": "a1", "parent_id": "u1", "format": "ai-sdk/v6", "content": _assistant("hi")},
        {"id": "a2", "parent_id": "u1", "format": "ai-sdk/v6", "content": _assistant("hi again")},
        {"id": "x1", "parent_id": "a2", "format": "aui/v0", "content": {"opaque": True}},
    ):
        posted = await client.post(f"/api/threads/{thread}/messages", json=row, headers=headers)
        assert posted.status_code == 204, posted.text
    return {"thread": thread, "message": "u1"}


@pytest.fixture
def target(store: ChatStore, database_url: str) -> Iterator[Target]:
    """``store`` has emptied the tables; the app gets its own engine on the same database."""
    loop = asyncio.new_event_loop()
    own_store = ChatStore.from_url(database_url, pool_size=2)
    app = create_app(_settings(), store=own_store)
    # A bug's 500 is a response like any other (checked below), not an exception raised through the transport.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
    try:
        served = loop.run_until_complete(client.get("/openapi.json"))
        assert served.json() == OPENAPI, "the document fuzzed is the one the app serves"
        ids = {user: loop.run_until_complete(_seed(client, user)) for user in ("alice", "bob")}
        rows = loop.run_until_complete(dump_tables(own_store.engine))
        bobs_rows = rows_of_user(rows, "bob")
        assert bobs_rows["messages"], "Bob's thread is seeded"
        target = Target(loop, app, own_store, client, ids, bobs_rows, rows)
        yield target
    finally:
        loop.run_until_complete(app.state.chatkeep.chat.close())
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(own_store.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _aim(case: schemathesis.Case[Any], ids: dict[str, str]) -> None:
    """Point the case's path ids, and the ids in its body, at a thread and a message that exist."""
    path = case.path_parameters or {}
    if "thread_id" in path:
        path["thread_id"] = ids["thread"]
    if "message_id" in path:
        path["message_id"] = ids["message"]
    if isinstance(case.body, dict):
        body_ids = {"id": ids["thread"] if case.path == "/api/chat" else ids["message"]}
        body_ids |= {"parent_id": ids["message"], "headId": ids["message"]}
        for key, value in body_ids.items():
            if key in case.body:
                case.body[key] = value


def _request(case: schemathesis.Case[Any], token: str) -> httpx.Request:
    """The case as an httpx request, its JSON body serialized here (so lone surrogates travel as ``\\ud800``)."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers={"authorization": f"Bearer {token}"})
    assert not kwargs.get("cookies"), "the API reads no cookies"
    content: bytes | None = None
    if "json" in kwargs:
        content = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        content = data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogatepass")
    return httpx.Request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=kwargs["headers"], content=content
    )


def _assert_error_body(response: httpx.Response) -> None:
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    for detail in error.get("details", []):
        assert set(detail) == {"loc", "message", "type"}, detail
        assert all(isinstance(value, str) for value in detail.values()), detail


async def _exercise(target: Target, case: schemathesis.Case[Any]) -> None:
    before = target.rows
    request = _request(case, _token("alice"))
    try:
        response = await target.client.send(request)
        await target.chat.wait_idle()  # a chat reply is stored in the background: let it land before comparing
    finally:
        target.rows = after = await dump_tables(target.store.engine)
    where = f"{request.method} {request.url} {request.content[:300]!r} -> {response.status_code}"

    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500, f"{where} {response.text}"
    if response.status_code >= 400:
        _assert_error_body(response)
        assert after == before, f"{where} changed stored rows"
    assert rows_of_user(after, "bob") == target.bobs_rows, f"{where} changed Bob's rows"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_refusals_store_nothing(case: schemathesis.Case[Any], target: Target) -> None:
    # The aim is derived from the case itself (``@schema.given`` would turn off the coverage phase), so a case
    # that Hypothesis replays or shrinks keeps it, and every run aims the same cases the same way.
    body = None if isinstance(case.body, NotSet) else case.body
    aim = AIMS[zlib.crc32(repr((case.method, case.path, case.path_parameters, body)).encode()) % len(AIMS)]
    if aim is not None:
        _aim(case, target.ids[aim])
    target.run(_exercise(target, case))
