"""Rows of chatkeep's tables ⇄ the JSON chatkeep's API speaks, for the part types the benchmarks use.

The floors' only "mapping layer": a branch per part type, straight from a row tuple to a dict and back. Both
drivers' rows are read by position, with the columns below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MESSAGE_COLUMNS",
    "PART_COLUMNS",
    "PART_INSERT_COLUMNS",
    "content_of",
    "iso_from_datetime",
    "iso_from_sqlite",
    "part_insert_row",
]

#: ``messages`` columns the floors read, in this order
MESSAGE_COLUMNS = "id, parent_id, format, role, metadata, extra, status, created_at"
#: ``parts`` columns the floors read, in this order
PART_COLUMNS = (
    "message_id, type, text_text, text_state, reasoning_text, reasoning_state, tool_call_id, tool_state, "
    "tool_input, tool_output, source_url_source_id, source_url_url, source_url_title, provider_metadata, extra"
)
#: ``parts`` columns the floors write, in this order
PART_INSERT_COLUMNS = (
    "thread_id, message_id, part_order, type, text_text, text_state, reasoning_text, reasoning_state, tool_name, "
    "tool_call_id, tool_state, tool_input, tool_output, source_url_source_id, source_url_url, source_url_title"
)

Loads = Callable[[Any], Any]


def iso_from_datetime(moment: datetime) -> str:
    """``2026-01-01T00:00:00.001Z``, as chatkeep writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_from_sqlite(text: str) -> str:
    """The same from SQLite's stored text (``2026-01-01 00:00:00.001000``)."""
    return f"{text[:10]}T{text[11:23]}Z"


def _part(row: Sequence[Any], loads: Loads) -> dict[str, Any]:
    kind = row[1]
    part: dict[str, Any]
    if kind == "text":
        part = {"type": kind, "text": row[2]}
        if row[3] is not None:
            part["state"] = row[3]
    elif kind == "reasoning":
        part = {"type": kind, "text": row[4]}
        if row[5] is not None:
            part["state"] = row[5]
    elif kind.startswith("tool-"):
        part = {"type": kind, "toolCallId": row[6], "state": row[7]}
        if row[8] is not None:
            part["input"] = loads(row[8])
        if row[9] is not None:
            part["output"] = loads(row[9])
    elif kind == "source-url":
        part = {"type": kind, "sourceId": row[10], "url": row[11]}
        if row[12] is not None:
            part["title"] = row[12]
    elif kind == "step-start":
        part = {"type": kind}
    else:
        raise ValueError(f"the floor does not know part type {kind!r}")
    if row[13] is not None:
        part["providerMetadata"] = loads(row[13])
    if row[14] is not None:
        part.update(loads(row[14]))
    return part


def content_of(message: Sequence[Any], parts: Sequence[Sequence[Any]], loads: Loads) -> dict[str, Any]:
    """A message's ``content`` (the UIMessage without its id) from its row and its part rows."""
    content: dict[str, Any] = {"role": message[3]}
    if message[4] is not None:
        content["metadata"] = loads(message[4])
    content["parts"] = [_part(row, loads) for row in parts]
    if message[5] is not None:
        content.update(loads(message[5]))
    return content


def part_insert_row(
    thread_id: str, message_id: str, order: int, part: Mapping[str, Any], dumps: Loads
) -> tuple[Any, ...]:
    """The ``parts`` row of one part, in :data:`PART_INSERT_COLUMNS` order."""
    kind = part["type"]
    text = text_state = reasoning = reasoning_state = tool = call_id = tool_state = None
    tool_input = tool_output = source_id = url = title = None
    if kind == "text":
        text, text_state = part["text"], part.get("state")
    elif kind == "reasoning":
        reasoning, reasoning_state = part["text"], part.get("state")
    elif kind.startswith("tool-"):
        tool, call_id, tool_state = kind[5:], part["toolCallId"], part["state"]
        if "input" in part:
            tool_input = dumps(part["input"])
        if "output" in part:
            tool_output = dumps(part["output"])
    elif kind == "source-url":
        source_id, url, title = part["sourceId"], part["url"], part.get("title")
    elif kind != "step-start":
        raise ValueError(f"the floor does not know part type {kind!r}")
    return (
        thread_id, message_id, order, kind, text, text_state, reasoning, reasoning_state, tool, call_id,
        tool_state, tool_input, tool_output, source_id, url, title,
    )  # fmt: skip
