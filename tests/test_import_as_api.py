"""``chatkeep import`` accepts exactly what the API accepts, line by line; titles have a length limit everywhere
(issue #12, point 12).

The import runs as a user runs it, ``python -m chatkeep import`` in a subprocess, against the test's database.
A line the API would refuse (an id with ``/``, a number beyond a double, JSON nested thousands deep, a title or
a text over the limits the server is configured with) is refused alone, reported on one line with its number and
reason, and the lines around it are imported. The same values are refused through HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import count_rows

STAMP = "2026-01-02T03:04:05.123456+00:00"
DEEP = 5000


def _message(message_id: str, text: str = "hello", **content: Any) -> dict[str, Any]:
    body = {"role": "user", "parts": [{"type": "text", "text": text}], **content}
    return {"id": message_id, "parent_id": None, "format": "ai-sdk/v6", "content": body, "created_at": STAMP}


def _record(thread_id: str, *messages: dict[str, Any], **thread: Any) -> str:
    return json.dumps(
        {
            "version": 1,
            "thread": {"id": thread_id, "createdAt": STAMP, "updatedAt": STAMP, **thread},
            "messages": list(messages) or [_message("m1")],
        }
    )


def _import(
    database_url: str, user: str, lines: list[str], tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "chatkeep", "import", "--user", user, "-i", str(source), "--database-url", database_url],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_import_refuses_what_the_api_refuses_line_by_line(
    store: ChatStore, database_url: str, tmp_path: Path
) -> None:
    deep = "[" * DEEP + "]" * DEEP
    lines = [
        _record("first"),
        _record("a/b"),
        _record("slashed-message", _message("m/1")),
        _record("huge", _message("m1", metadata={"n": 1e308})).replace("1e+308", "1e400"),
        _record("deep").replace('"updatedAt"', f'"custom": {deep}, "updatedAt"'),
        _record("long-title", title="t" * 1_000_001),
        _record("long-text", _message("m1", text="x" * 11)),
        _record("fffd", _message("m\ufffd")),
        _record("last", title="t" * 100),
    ]
    assert "1e400" in lines[3]
    result = _import(database_url, "bob", lines, tmp_path, CHATKEEP_MAX_TEXT_CHARS="10")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    reported = result.stderr.splitlines()
    assert reported[3].startswith("line 5: not JSON: recursion limit exceeded at line 1 column ")  # as the API says
    assert reported[:3] + reported[4:] == [
        "line 2 (thread 'a/b'): thread.id: an id names its thread or message in URLs, so it may not contain '/' "
        "nor be '.' or '..'",
        "line 3 (thread 'slashed-message'): messages[0].id: an id names its thread or message in URLs, so it may "
        "not contain '/' nor be '.' or '..'",
        "line 4: not JSON: a number is out of range (beyond a double, such as 1e400)",
        "line 6 (thread 'long-title'): thread.title: longer than 1000 characters",
        "line 7 (thread 'long-text'): messages[0].content.parts[0].text: longer than 10 characters",
        "line 8 (thread 'fffd'): messages[0].id: an id may not contain U+FFFD (what bytes that were not UTF-8 "
        "decode to)",
        "imported 2 threads for user 'bob'",
        "Error: 7 records not imported (see the lines above)",
    ]
    assert sorted(t.id for t in await store.list_threads("bob")) == ["first", "last"]
    assert await count_rows(store) == {"threads": 2, "messages": 2, "parts": 2}


@pytest.fixture
async def api(store: ChatStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(migrate_on_start=False, max_title_chars=50), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def test_the_api_refuses_a_title_over_the_limit(api: httpx.AsyncClient, store: ChatStore) -> None:
    refused = await api.post("/api/threads", json={"title": "t" * 51})
    assert refused.status_code == 413
    assert refused.json()["error"] == {
        "code": "payload_too_large",
        "message": "body.title: longer than 50 characters",
    }
    assert (await count_rows(store))["threads"] == 0
    created = await api.post("/api/threads", json={"title": "t" * 50})
    assert created.status_code == 201
    thread = created.json()["id"]
    renamed = await api.patch(f"/api/threads/{thread}", json={"title": "u" * 1_000_000})
    assert renamed.status_code == 413 and "body.title" in renamed.json()["error"]["message"]
    assert (await api.get(f"/api/threads/{thread}")).json()["title"] == "t" * 50


async def test_a_generated_title_keeps_the_limit(store: ChatStore) -> None:
    app = create_app(Settings(migrate_on_start=False, max_title_chars=8), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        thread = (await client.post("/api/threads", json={})).json()["id"]
        words = {"role": "user", "parts": [{"type": "text", "text": "a title far longer than eight characters"}]}
        titled = await client.post(f"/api/threads/{thread}/title", json={"messages": [words]})
        assert titled.status_code == 200
        assert len(titled.json()["title"]) <= 8
        assert (await client.get(f"/api/threads/{thread}")).json()["title"] == titled.json()["title"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "a/b", "messages": [_message("m1")["content"] | {"id": "m1"}]}, 422, "body.id: an id names"),
        ({"id": "t1", "message": _message("m\ufffd")["content"] | {"id": "m\ufffd"}}, 422, "U+FFFD"),
    ],
    ids=["slash", "replacement-character"],
)
async def test_the_api_refuses_the_same_ids(
    client: httpx.AsyncClient, store: ChatStore, body: dict[str, Any], status: int, message: str
) -> None:
    response = await client.post("/api/chat", json=body)
    assert response.status_code == status and message in response.json()["error"]["message"], response.text
    huge = await client.post(
        "/api/threads", content=b'{"custom": {"n": 1e400}}', headers={"content-type": "application/json"}
    )
    assert huge.status_code == 400 and "1e400" in huge.json()["error"]["message"]
    assert (await count_rows(store))["threads"] == 0
