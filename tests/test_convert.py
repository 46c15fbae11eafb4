"""UIMessages → model messages, as the AI SDK's ``convertToModelMessages`` (``ignoreIncompleteToolCalls``)."""

from __future__ import annotations

from typing import Any

from chatkeep.chat.convert import to_model_messages
from chatkeep.providers.base import (
    FilePart,
    ModelMessage,
    ReasoningContent,
    TextContent,
    ToolCallContent,
    ToolResultContent,
)


def test_every_part_kind_and_step_blocks() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "parts": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "text": "look"},
                {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA==", "filename": "a.png"},
                {"type": "data-x", "data": 1},
            ],
        },
        {"role": "user", "parts": [{"type": "data-only", "data": 2}]},  # nothing for the model: left out
        {
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "hmm", "state": "done"},
                {"type": "tool-get_weather", "toolCallId": "c1", "state": "output-available", "input": {"city": "A"},
                 "output": {"t": 1}},
                {"type": "dynamic-tool", "toolName": "dyn", "toolCallId": "c2", "state": "output-error",
                 "input": None, "errorText": "boom"},
                {"type": "tool-ask", "toolCallId": "c3", "state": "input-available", "input": {}},  # no result yet
                {"type": "source-url", "sourceId": "s", "url": "https://example.com"},
                {"type": "step-start"},
                {"type": "tool-rm", "toolCallId": "c4", "state": "output-denied", "input": {"path": "/"},
                 "approval": {"id": "ap", "approved": False, "reason": "no"}},
                {"type": "tool-rm", "toolCallId": "c5", "state": "output-denied", "rawInput": "{", "approval": None},
                {"type": "step-start"},
                {"type": "text", "text": "done", "state": "done"},
                {"type": "step-start"},
            ],
        },
    ]  # fmt: skip
    assert to_model_messages(messages) == [
        ModelMessage("system", [TextContent("be brief")]),
        ModelMessage("user", [TextContent("look"), FilePart("image/png", "data:image/png;base64,AA==", "a.png")]),
        ModelMessage(
            "assistant",
            [
                ReasoningContent("hmm"),
                ToolCallContent("c1", "get_weather", {"city": "A"}),
                ToolCallContent("c2", "dyn", None),
            ],
        ),  # fmt: skip
        ModelMessage(
            "tool",
            [ToolResultContent("c1", "get_weather", {"t": 1}), ToolResultContent("c2", "dyn", "boom", is_error=True)],
        ),
        ModelMessage("assistant", [ToolCallContent("c4", "rm", {"path": "/"}), ToolCallContent("c5", "rm", "{")]),
        ModelMessage(
            "tool",
            [
                ToolResultContent("c4", "rm", "no", is_error=True),
                ToolResultContent("c5", "rm", "Tool call execution denied.", is_error=True),
            ],
        ),  # fmt: skip
        ModelMessage("assistant", [TextContent("done")]),
    ]


def test_an_assistant_message_without_steps_is_one_block() -> None:
    parts = [{"type": "text", "text": "a", "state": "done"}, {"type": "text", "text": "b", "state": "done"}]
    assert to_model_messages([{"role": "assistant", "parts": parts}]) == [
        ModelMessage("assistant", [TextContent("a"), TextContent("b")])
    ]
