"""Every part type and tool state of ai 5, 6 and 7 survives storage: appended through the history API, it comes
back deep-equal from ``GET /api/threads/{id}/messages`` and ``GET /api/chat/{id}/messages``, and its parts are
rows of ``parts`` with the typed columns filled."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chatkeep.store import ChatStore
from tests.conftest import load_fixture, system_transaction

VALID: list[dict[str, Any]] = load_fixture("ui_messages.json")

# Which typed columns must be filled for a part, by the part's type family.
TYPED_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text_text",),
    "reasoning": ("reasoning_text",),
    "file": ("file_media_type", "file_url"),
    "reasoning-file": ("file_media_type", "file_url"),
    "source-url": ("source_url_source_id", "source_url_url"),
    "source-document": ("source_document_source_id", "source_document_media_type", "source_document_title"),
    "step-start": (),
    "dynamic-tool": ("tool_name", "tool_call_id", "tool_state"),
    "tool": ("tool_name", "tool_call_id", "tool_state"),
    "data": ("data_name",),
    "custom": ("custom_kind",),
    "steering-message": ("steering_id",),
}


def _family(part_type: str) -> str:
    if part_type.startswith("tool-"):
        return "tool"
    if part_type.startswith("data-"):
        return "data"
    return part_type


def _content(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "id"}


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
async def test_message_comes_back_key_for_key(client: httpx.AsyncClient, case: dict[str, Any]) -> None:
    thread = (await client.post("/api/threads")).json()["id"]
    message = case["message"]
    row = {"id": message["id"], "parent_id": None, "format": case["format"], "content": _content(message)}
    response = await client.post(f"/api/threads/{thread}/messages", json=row)
    assert response.status_code == 204, response.text

    rows = (await client.get(f"/api/threads/{thread}/messages")).json()
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("id", "parent_id", "format", "content")} == row
    assert (await client.get(f"/api/chat/{thread}/messages")).json() == [message]


async def test_parts_are_typed_rows(client: httpx.AsyncClient, store: ChatStore) -> None:
    """All cases in one thread (as one chain), then every part row is checked against its typed columns."""
    thread = (await client.post("/api/threads")).json()["id"]
    parent = None
    for case in VALID:
        message = case["message"]
        row = {"id": message["id"], "parent_id": parent, "format": case["format"], "content": _content(message)}
        assert (await client.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
        parent = message["id"]

    async with system_transaction(store.engine) as conn:
        result = await conn.execute(
            text("SELECT * FROM parts WHERE thread_id = :t ORDER BY message_id, part_order"), {"t": thread}
        )
        stored = [dict(r) for r in result.mappings()]
    by_message: dict[str, list[dict[str, Any]]] = {}
    for part_row in stored:
        by_message.setdefault(part_row["message_id"], []).append(part_row)

    for case in VALID:
        parts = case["message"]["parts"]
        rows = by_message.get(case["message"]["id"], [])
        assert [r["type"] for r in rows] == [p["type"] for p in parts], case["name"]
        for part, part_row in zip(parts, rows, strict=True):
            family = _family(part["type"])
            for column in TYPED_COLUMNS[family]:
                assert part_row[column] is not None, (case["name"], part["type"], column)
            if family == "tool":
                assert part_row["tool_name"] == part["type"].split("-", 1)[1]
                assert part_row["tool_call_id"] == part["toolCallId"]
                assert part_row["tool_state"] == part["state"]
            if family == "text":
                assert part_row["text_text"] == part["text"]
            # Known keys live in typed columns; only keys without a column (or a null for an optional key)
            # may land in ``extra``.
            for key in part_row["extra"] or {}:
                assert key not in ("text", "toolCallId", "state", "url", "mediaType", "sourceId"), (case["name"], key)


async def test_extra_keys_and_nulls_are_kept(client: httpx.AsyncClient) -> None:
    content = {
        "role": "assistant",
        "metadata": None,
        "createdAt": "2025-01-01T00:00:00.000Z",
        "parts": [
            {"type": "text", "text": "x", "futureField": {"nested": [1, 2, None]}, "provider_metadata": {"a": {}}},
            {"type": "tool-lookup", "toolCallId": "c1", "state": "input-streaming", "input": None},
            {"type": "tool-lookup", "toolCallId": "c2", "state": "output-available", "input": None, "output": None},
            {"type": "data-empty", "data": None},
            {"type": "dynamic-tool", "toolName": "mcp.search", "toolCallId": "c3", "state": "output-error",
             "errorText": "boom", "rawInput": "{bad json"},
        ],
    }  # fmt: skip
    thread = (await client.post("/api/threads")).json()["id"]
    row = {"id": "m1", "parent_id": None, "format": "ai-sdk/v6", "content": content}
    assert (await client.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
    (stored,) = (await client.get(f"/api/threads/{thread}/messages")).json()
    assert stored["content"] == content


async def test_big_integers_and_floats_are_exact(client: httpx.AsyncClient) -> None:
    data = {"big": 123456789012345678901234567890, "neg": -(2**70), "float": 0.1, "exp": 1e-300, "int": 2**53 + 1}
    content = {"role": "user", "parts": [{"type": "data-numbers", "data": data}]}
    thread = (await client.post("/api/threads")).json()["id"]
    row = {"id": "n1", "parent_id": None, "format": "ai-sdk/v6", "content": content}
    assert (await client.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
    (stored,) = (await client.get(f"/api/threads/{thread}/messages")).json()
    assert stored["content"] == content


async def test_long_integers_come_back_exact_from_every_json_column(client: httpx.AsyncClient) -> None:
    """JSON columns are parsed by orjson unless the text holds a long digit run (orjson turns integers beyond 64
    bits into floats): every integer at and beyond the edges, in every kind of JSON column, comes back exact and
    in its place, through both read routes."""
    edges = {
        "z": 2**64, "y": 2**64 - 1, "x": -(2**63) - 1, "w": -(2**63), "big": 10**30, "neg": -(10**30),
        "float": 1.5e300, "tiny": 5e-324, "digits": "12345678901234567890123", "list": [2**100, 0.1, None],
    }  # fmt: skip
    content = {
        "role": "assistant",
        "metadata": {"usage": {"tokens": 2**65}, **edges},
        "parts": [
            {"type": "tool-calc", "toolCallId": "c1", "state": "output-available", "input": {"n": -(2**64), **edges},
             "output": {**edges, "result": 123456789012345678901234567890}, "providerMetadata": {"p": {"id": 2**80}}},
            {"type": "text", "text": "done", "futureField": {"n": 2**90, **edges}},
            {"type": "data-n", "data": edges},
        ],
        "customTopLevel": {"n": -(2**77)},
    }  # fmt: skip
    thread = (await client.post("/api/threads")).json()["id"]
    row = {"id": "n1", "parent_id": None, "format": "ai-sdk/v6", "content": content}
    assert (await client.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
    (stored,) = (await client.get(f"/api/threads/{thread}/messages")).json()
    (message,) = (await client.get(f"/api/chat/{thread}/messages")).json()
    expected = json.dumps(content)  # key order matters too
    assert json.dumps(stored["content"]) == expected
    assert json.dumps({k: v for k, v in message.items() if k != "id"}) == expected
