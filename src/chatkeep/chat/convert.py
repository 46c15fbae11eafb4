"""UIMessages → :class:`ModelMessage` s, as the AI SDK's ``convertToModelMessages`` does.

Mirrors ``ui/convert-to-model-messages.ts`` (ai 6/7) with ``ignoreIncompleteToolCalls`` on:

* ``system``: its text; ``user``: text and files (data parts and everything else are dropped);
* ``assistant``: split into blocks at each ``step-start``; each block gives an assistant message (text,
  reasoning, tool calls) followed by a ``tool`` message with the results of its tool calls;
* tool calls without a result yet (``input-streaming``, ``input-available``, pending approval) are left out, so
  a provider never sees a call without its answer; denied calls answer with the denial;
* sources, ``step-start``, data, custom and reasoning-file parts are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chatkeep.providers.base import (
    ContentPart,
    FilePart,
    ModelMessage,
    ReasoningContent,
    TextContent,
    ToolCallContent,
    ToolResultContent,
)

__all__ = ["to_model_messages", "tool_name"]

_DONE_STATES = frozenset({"output-available", "output-error", "output-denied"})


def tool_name(part: Mapping[str, Any]) -> str | None:
    """The tool a part calls (``tool-<name>`` or ``dynamic-tool``), or ``None`` for other parts."""
    kind: str = part["type"]
    if kind == "dynamic-tool":
        return str(part["toolName"])
    if kind.startswith("tool-"):
        return kind.split("-", 1)[1]
    return None


def to_model_messages(messages: Sequence[Mapping[str, Any]]) -> list[ModelMessage]:
    out: list[ModelMessage] = []
    for message in messages:
        role = message["role"]
        parts: Sequence[Mapping[str, Any]] = message["parts"]
        if role == "system":
            text = "".join(p["text"] for p in parts if p["type"] == "text")
            out.append(ModelMessage("system", [TextContent(text)]))
        elif role == "user":
            content: list[ContentPart] = []
            for part in parts:
                if part["type"] == "text":
                    content.append(TextContent(part["text"]))
                elif part["type"] == "file":
                    content.append(FilePart(part["mediaType"], part["url"], part.get("filename")))
            if content:
                out.append(ModelMessage("user", content))
        else:
            out.extend(_assistant(parts))
    return out


def _assistant(parts: Sequence[Mapping[str, Any]]) -> list[ModelMessage]:
    """One pass over the parts: each ``step-start`` closes a block (its assistant message, then its results)."""
    out: list[ModelMessage] = []
    content: list[ContentPart] = []
    results: list[ContentPart] = []
    for part in parts:
        kind = part["type"]
        if kind == "text":
            content.append(TextContent(part["text"]))
        elif kind == "reasoning":
            content.append(ReasoningContent(part["text"]))
        elif kind == "step-start":
            _close_block(out, content, results)
            content, results = [], []
        elif (kind == "dynamic-tool" or kind.startswith("tool-")) and part.get("state") in _DONE_STATES:
            name = tool_name(part) or ""
            state = part["state"]
            call_id = part["toolCallId"]
            content.append(ToolCallContent(call_id, name, part.get("input", part.get("rawInput"))))
            if state == "output-available":
                results.append(ToolResultContent(call_id, name, part.get("output")))
            elif state == "output-error":
                results.append(ToolResultContent(call_id, name, part["errorText"], is_error=True))
            else:
                reason = (part.get("approval") or {}).get("reason") or "Tool call execution denied."
                results.append(ToolResultContent(call_id, name, reason, is_error=True))
    _close_block(out, content, results)
    return out


def _close_block(out: list[ModelMessage], content: list[ContentPart], results: list[ContentPart]) -> None:
    if content:
        out.append(ModelMessage("assistant", content))
    if results:
        out.append(ModelMessage("tool", results))
