"""The database itself refuses incomplete rows: CHECK constraints per part type (the seed's "complete part
definitions"), message format/role rules, and the tree's foreign keys. Rows are written with raw SQL, past
chatkeep's own validation, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from chatkeep.store import ChatStore
from tests.conftest import system_transaction

_NOW = "CURRENT_TIMESTAMP"
MESSAGE = {"role": "assistant", "parts": [{"type": "text", "text": "hello"}]}


async def _thread_with_message(store: ChatStore) -> str:
    thread, _ = await store.create_thread("u1")
    await store.upsert_message("u1", thread.id, message_id="m1", parent_id=None, content=MESSAGE)
    return thread.id


async def _insert_part(store: ChatStore, thread_id: str, columns: dict[str, Any]) -> None:
    values = {"thread_id": thread_id, "message_id": "m1", "part_order": 7, **columns}
    names = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    async with system_transaction(store.engine) as conn:
        await conn.execute(text(f"INSERT INTO parts ({names}) VALUES ({params})"), values)


COMPLETE_PARTS: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text_text": "hi"},
    "reasoning": {"type": "reasoning", "reasoning_text": "hmm"},
    "file": {"type": "file", "file_media_type": "image/png", "file_url": "https://x/a.png"},
    "source-url": {"type": "source-url", "source_url_source_id": "s1", "source_url_url": "https://x"},
    "source-document": {
        "type": "source-document",
        "source_document_source_id": "d1",
        "source_document_media_type": "application/pdf",
        "source_document_title": "Doc",
    },
    "tool-output": {
        "type": "tool-weather",
        "tool_name": "weather",
        "tool_call_id": "c1",
        "tool_state": "output-available",
        "tool_input": "{}",
        "tool_output": "null",
    },
    "data": {"type": "data-chart", "data_name": "chart", "data_value": "[1,2]"},
    "custom": {"type": "custom", "custom_kind": "openai.thing"},
    "step-start": {"type": "step-start"},
}

INCOMPLETE_PARTS: dict[str, dict[str, Any]] = {
    "text without text": {"type": "text"},
    "reasoning without text": {"type": "reasoning"},
    "file without url": {"type": "file", "file_media_type": "image/png"},
    "reasoning-file without media type": {"type": "reasoning-file", "file_url": "https://x/a.png"},
    "source-url without url": {"type": "source-url", "source_url_source_id": "s1"},
    "source-document without title": {
        "type": "source-document",
        "source_document_source_id": "d1",
        "source_document_media_type": "application/pdf",
    },
    "tool without call id": {"type": "tool-weather", "tool_name": "weather", "tool_state": "input-streaming"},
    "tool with unknown state": {"type": "tool-weather", "tool_name": "weather", "tool_call_id": "c", "tool_state": "x"},
    "tool input-available without input": {
        "type": "tool-weather", "tool_name": "weather", "tool_call_id": "c", "tool_state": "input-available",
    },
    "tool output-available without output": {
        "type": "tool-weather", "tool_name": "weather", "tool_call_id": "c", "tool_state": "output-available",
        "tool_input": "{}",
    },
    "tool output-error without error text": {
        "type": "tool-weather", "tool_name": "weather", "tool_call_id": "c", "tool_state": "output-error",
    },
    "tool approval-requested without approval": {
        "type": "tool-weather", "tool_name": "weather", "tool_call_id": "c", "tool_state": "approval-requested",
        "tool_input": "{}",
    },
    "dynamic tool without name": {"type": "dynamic-tool", "tool_call_id": "c", "tool_state": "input-streaming"},
    "data without value": {"type": "data-chart", "data_name": "chart"},
    "custom without kind": {"type": "custom"},
    "steering message without parts": {"type": "steering-message", "steering_id": "s"},
    "unknown type": {"type": "bogus"},
    "bare tool- prefix": {"type": "tool-", "tool_name": "", "tool_call_id": "c", "tool_state": "input-streaming"},
    "text with unknown state": {"type": "text", "text_text": "x", "text_state": "finished"},
    "negative order": {"type": "step-start", "part_order": -1},
}  # fmt: skip


@pytest.mark.parametrize("name", COMPLETE_PARTS)
async def test_complete_parts_are_accepted(store: ChatStore, name: str) -> None:
    thread_id = await _thread_with_message(store)
    await _insert_part(store, thread_id, COMPLETE_PARTS[name])


@pytest.mark.parametrize("name", INCOMPLETE_PARTS)
async def test_incomplete_parts_are_refused_by_the_database(store: ChatStore, name: str) -> None:
    thread_id = await _thread_with_message(store)
    with pytest.raises(IntegrityError):
        await _insert_part(store, thread_id, INCOMPLETE_PARTS[name])


class TestMessageRows:
    async def _insert(self, store: ChatStore, thread_id: str, **columns: Any) -> None:
        values = {"thread_id": thread_id, "id": "m2", "seq": 9, "format": "ai-sdk/v6", "role": "user"}
        values.update(columns)
        names = ", ".join(values)
        params = ", ".join(f":{name}" for name in values)
        sql = f"INSERT INTO messages ({names}, created_at, updated_at) VALUES ({params}, {_NOW}, {_NOW})"
        async with system_transaction(store.engine) as conn:
            await conn.execute(text(sql), values)

    async def test_a_complete_row_is_accepted(self, store: ChatStore) -> None:
        thread_id = await _thread_with_message(store)
        await self._insert(store, thread_id, parent_id="m1")

    @pytest.mark.parametrize(
        "columns",
        [
            {"role": None},
            {"role": "tool"},
            {"format": "aui/v0", "role": None},
            {"content": '{"role": "user"}'},
            {"parent_id": "m2"},
            {"parent_id": "missing"},
            {"seq": 1},
        ],
        ids=["typed-without-role", "bad-role", "opaque-without-content", "typed-with-content", "own-parent",
             "dangling-parent", "duplicate-seq"],
    )  # fmt: skip
    async def test_inconsistent_rows_are_refused(self, store: ChatStore, columns: dict[str, Any]) -> None:
        thread_id = await _thread_with_message(store)
        with pytest.raises(IntegrityError):
            await self._insert(store, thread_id, **columns)


async def test_thread_status_is_checked(store: ChatStore) -> None:
    thread, _ = await store.create_thread("u1")
    with pytest.raises(IntegrityError):
        async with system_transaction(store.engine) as conn:
            await conn.execute(text("UPDATE threads SET status = 'deleted' WHERE id = :id"), {"id": thread.id})
