"""The AI SDK UI message stream (server → client): SSE framing, and the message its chunks build.

Mirrors ``packages/ai/src/ui-message-stream/*`` and ``ui/process-ui-message-stream.ts`` of ``ai@6.0.322`` and
``ai@7.0.173`` (see ``shared/reference/ai-sdk-protocol.md`` §2 and ``ai-sdk-v7-delta.md`` §2). Chunks are plain
dicts: they are built once per token on the hot path, and a dict goes straight to the encoder.

Rules every chunk chatkeep emits follows (the strict clients, ai ≤ 5.0.216, ≤ 6.0.230 and 7.0.0–7.0.31, reject
anything else):

* only the fields of the **common subset** that every client from 5.0.0 to 7.x declares, unless a newer
  feature was switched on by configuration;
* an optional field is omitted, never ``null``; the ``unknown``-typed keys (``input``, ``output``, ``data``)
  are always present (``null`` if need be);
* every ``*-start`` is closed by its ``*-end`` before ``finish-step``.

:class:`MessageAssembler` applies chunks the way the client's reducer does, so the message chatkeep stores is
the message ``useChat`` holds, key for key (after JSON encoding, which drops the client's ``undefined`` keys).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["DONE", "UI_MESSAGE_STREAM_HEADERS", "MessageAssembler", "StreamError", "StreamFeatures", "encode_sse"]

#: ``UI_MESSAGE_STREAM_HEADERS`` (the same from ai 5.0.0 to 7.x).
UI_MESSAGE_STREAM_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}

DONE = b"data: [DONE]\n\n"


def _version(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version: {text!r} (expected e.g. 5.0.0 or 6.0.100)")
    major, minor, patch = (int(p) for p in [*parts, "0", "0"][:3])
    return major, minor, patch


@dataclass(frozen=True, slots=True)
class StreamFeatures:
    """Which chunks and fields beyond the common subset chatkeep may send.

    Clients do not say which ``ai`` version they run, so the server is told the **oldest** version it must
    serve (``CHATKEEP_AI_SDK_VERSION``, default ``5.0.0``: every client). Newer chunks are used only when every
    client from that version on accepts them (``ai-sdk-v7-delta.md`` §6).
    """

    #: ``finish.finishReason`` (ai 5.0.92+)
    finish_reason: bool = False
    #: ``tool-approval-request`` and ``tool-output-denied`` (ai 6.0.0+)
    tool_approval: bool = False

    @classmethod
    def for_clients(cls, oldest: str) -> StreamFeatures:
        version = _version(oldest)
        return cls(finish_reason=version >= (5, 0, 92), tool_approval=version >= (6, 0, 0))


def encode_sse(chunk: Mapping[str, Any]) -> bytes:
    """One SSE event: ``data: <json>\\n\\n`` (compact, UTF-8, no NaN)."""
    try:
        body = orjson.dumps(chunk)
    except TypeError:  # integers beyond 64 bits
        body = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return b"data: " + body + b"\n\n"


class StreamError(ValueError):
    """A chunk the client would refuse (e.g. a delta for a part that was never started)."""


def _drop_none(part: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in part.items() if value is not None}


class MessageAssembler:
    """Builds the assistant ``UIMessage`` from UI message chunks, as the client's reducer does.

    Start from ``base`` (the stored assistant message, for a continuation: new parts are appended to it) or
    from an empty message with ``message_id``. :attr:`message` is the message so far, ready to store.
    """

    def __init__(self, message_id: str, base: Mapping[str, Any] | None = None) -> None:
        if base is not None:
            self._message: dict[str, Any] = copy.deepcopy(dict(base))
            self._message["id"] = message_id
        else:
            self._message = {"id": message_id, "role": "assistant", "parts": []}
        self._text: dict[str, dict[str, Any]] = {}
        self._reasoning: dict[str, dict[str, Any]] = {}
        self._tool_text: dict[str, str] = {}
        self.finish_reason: str | None = None
        self.aborted = False
        self.error_text: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        return self._message

    @property
    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = self._message["parts"]
        return parts

    def open_part_ids(self) -> tuple[list[str], list[str]]:
        """Ids of text and reasoning parts started but not yet ended."""
        return list(self._text), list(self._reasoning)

    def apply(self, chunk: Mapping[str, Any]) -> None:
        kind = chunk["type"]
        handler = getattr(self, "_" + kind.replace("-", "_"), None)
        if handler is not None:
            handler(chunk)
        elif kind.startswith("data-"):
            self._data(chunk)
        else:
            raise StreamError(f"unknown chunk type {kind!r}")

    # -- message level ------------------------------------------------------------------------------------

    def _merge_metadata(self, metadata: Any) -> None:
        if metadata is None:
            return
        current = self._message.get("metadata")
        self._message["metadata"] = _merge(current, metadata) if current is not None else metadata

    def _start(self, chunk: Mapping[str, Any]) -> None:
        if chunk.get("messageId") is not None:
            self._message["id"] = chunk["messageId"]
        self._merge_metadata(chunk.get("messageMetadata"))

    def _message_metadata(self, chunk: Mapping[str, Any]) -> None:
        self._merge_metadata(chunk.get("messageMetadata"))

    def _finish(self, chunk: Mapping[str, Any]) -> None:
        self.finish_reason = chunk.get("finishReason", self.finish_reason)
        self._merge_metadata(chunk.get("messageMetadata"))

    def _abort(self, _chunk: Mapping[str, Any]) -> None:
        self.aborted = True

    def _error(self, chunk: Mapping[str, Any]) -> None:
        self.error_text = chunk["errorText"]

    def _start_step(self, _chunk: Mapping[str, Any]) -> None:
        self.parts.append({"type": "step-start"})

    def _finish_step(self, _chunk: Mapping[str, Any]) -> None:
        self._text.clear()
        self._reasoning.clear()

    # -- text and reasoning -------------------------------------------------------------------------------

    def _text_start(self, chunk: Mapping[str, Any]) -> None:
        part = _drop_none(
            {"type": "text", "text": "", "providerMetadata": chunk.get("providerMetadata"), "state": "streaming"}
        )
        self._text[chunk["id"]] = part
        self.parts.append(part)

    def _text_delta(self, chunk: Mapping[str, Any]) -> None:
        part = self._open(self._text, chunk, "text")
        part["text"] += chunk["delta"]
        if chunk.get("providerMetadata") is not None:
            part["providerMetadata"] = chunk["providerMetadata"]

    def _text_end(self, chunk: Mapping[str, Any]) -> None:
        part = self._open(self._text, chunk, "text")
        part["state"] = "done"
        if chunk.get("providerMetadata") is not None:
            part["providerMetadata"] = chunk["providerMetadata"]
        del self._text[chunk["id"]]

    def _reasoning_start(self, chunk: Mapping[str, Any]) -> None:
        part = _drop_none(
            {
                "type": "reasoning",
                "id": chunk["id"],
                "text": "",
                "providerMetadata": chunk.get("providerMetadata"),
                "state": "streaming",
            }
        )
        self._reasoning[chunk["id"]] = part
        self.parts.append(part)

    def _reasoning_delta(self, chunk: Mapping[str, Any]) -> None:
        part = self._open(self._reasoning, chunk, "reasoning")
        part["text"] += chunk["delta"]
        if chunk.get("providerMetadata") is not None:
            part["providerMetadata"] = chunk["providerMetadata"]

    def _reasoning_end(self, chunk: Mapping[str, Any]) -> None:
        part = self._open(self._reasoning, chunk, "reasoning")
        part["state"] = "done"
        if chunk.get("providerMetadata") is not None:
            part["providerMetadata"] = chunk["providerMetadata"]
        del self._reasoning[chunk["id"]]

    @staticmethod
    def _open(active: dict[str, dict[str, Any]], chunk: Mapping[str, Any], kind: str) -> dict[str, Any]:
        part = active.get(chunk["id"])
        if part is None:
            raise StreamError(f"{chunk['type']} for {kind} part {chunk['id']!r}, which is not open")
        return part

    # -- sources, files, data -----------------------------------------------------------------------------

    def _source_url(self, chunk: Mapping[str, Any]) -> None:
        self.parts.append(
            _drop_none(
                {
                    "type": "source-url",
                    "sourceId": chunk["sourceId"],
                    "url": chunk["url"],
                    "title": chunk.get("title"),
                    "providerMetadata": chunk.get("providerMetadata"),
                }
            )
        )

    def _source_document(self, chunk: Mapping[str, Any]) -> None:
        self.parts.append(
            _drop_none(
                {
                    "type": "source-document",
                    "sourceId": chunk["sourceId"],
                    "mediaType": chunk["mediaType"],
                    "title": chunk["title"],
                    "filename": chunk.get("filename"),
                    "providerMetadata": chunk.get("providerMetadata"),
                }
            )
        )

    def _file(self, chunk: Mapping[str, Any]) -> None:
        self.parts.append(
            _drop_none(
                {
                    "type": "file",
                    "mediaType": chunk["mediaType"],
                    "url": chunk["url"],
                    "providerMetadata": chunk.get("providerMetadata"),
                }
            )
        )

    def _data(self, chunk: Mapping[str, Any]) -> None:
        if chunk.get("transient"):
            return
        part = {key: value for key, value in chunk.items() if key in ("type", "id", "data")}
        if part.get("id") is not None:
            for existing in self.parts:
                if existing["type"] == part["type"] and existing.get("id") == part["id"]:
                    existing["data"] = part["data"]
                    return
        self.parts.append(part)

    # -- tools ----------------------------------------------------------------------------------------------

    def _find_tool(self, tool_call_id: str) -> dict[str, Any] | None:
        return next((p for p in reversed(self.parts) if p.get("toolCallId") == tool_call_id), None)

    def _tool_part(self, chunk: Mapping[str, Any]) -> dict[str, Any]:
        part = self._find_tool(chunk["toolCallId"])
        if part is None:
            part = (
                {"type": "dynamic-tool", "toolName": chunk["toolName"]}
                if chunk.get("dynamic")
                else {"type": f"tool-{chunk['toolName']}"}
            )
            part["toolCallId"] = chunk["toolCallId"]
            self.parts.append(part)
        return part

    def _tool_input_start(self, chunk: Mapping[str, Any]) -> None:
        part = self._tool_part(chunk)
        part["state"] = "input-streaming"
        part.pop("input", None)
        if chunk.get("providerExecuted") is not None:
            part["providerExecuted"] = chunk["providerExecuted"]
        self._tool_text[chunk["toolCallId"]] = ""

    def _tool_input_delta(self, chunk: Mapping[str, Any]) -> None:
        if chunk["toolCallId"] not in self._tool_text:
            raise StreamError(f"tool-input-delta for tool call {chunk['toolCallId']!r}, which was not started")
        self._tool_text[chunk["toolCallId"]] += chunk["inputTextDelta"]

    def _tool_input_available(self, chunk: Mapping[str, Any]) -> None:
        part = self._tool_part(chunk)
        part["state"] = "input-available"
        part["input"] = chunk["input"]
        if chunk.get("providerExecuted") is not None:
            part["providerExecuted"] = chunk["providerExecuted"]
        if chunk.get("providerMetadata") is not None:
            part["callProviderMetadata"] = chunk["providerMetadata"]
        self._tool_text.pop(chunk["toolCallId"], None)

    def _existing_tool(self, chunk: Mapping[str, Any]) -> dict[str, Any]:
        part = self._find_tool(chunk["toolCallId"])
        if part is None:
            raise StreamError(f"{chunk['type']} for tool call {chunk['toolCallId']!r}, which has no input")
        return part

    def _tool_output_available(self, chunk: Mapping[str, Any]) -> None:
        part = self._existing_tool(chunk)
        part["state"] = "output-available"
        part["output"] = chunk["output"]
        part.pop("errorText", None)
        if chunk.get("preliminary"):
            part["preliminary"] = True
        else:
            part.pop("preliminary", None)

    def _tool_output_error(self, chunk: Mapping[str, Any]) -> None:
        part = self._existing_tool(chunk)
        part["state"] = "output-error"
        part["errorText"] = chunk["errorText"]
        part.pop("output", None)

    def _tool_approval_request(self, chunk: Mapping[str, Any]) -> None:
        part = self._existing_tool(chunk)
        part["state"] = "approval-requested"
        part["approval"] = {"id": chunk["approvalId"]}

    def _tool_output_denied(self, chunk: Mapping[str, Any]) -> None:
        part = self._existing_tool(chunk)
        part["state"] = "output-denied"


def _merge(current: Any, update: Any) -> Any:
    """The client's ``mergeObjects``: plain objects merge deeply, anything else is replaced."""
    if isinstance(current, dict) and isinstance(update, dict):
        merged = dict(current)
        for key, value in update.items():
            merged[key] = _merge(merged.get(key), value) if key in merged else value
        return merged
    return update
