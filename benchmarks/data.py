"""The benchmark's conversations: deterministic UIMessages, the same on every run.

A conversation alternates a user message (one text part) and an assistant reply of four parts, as the issue asks:
a reasoning part, a tool call with its input and output, a text part and a source. Sizes are those of a
typical chat (a sentence or two from the user, a paragraph back); one assistant message is about 1.3 KB of JSON.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BENCH_USER",
    "LIST_USER",
    "assistant_message",
    "conversation",
    "count_prompt",
    "count_reply_text",
    "demo_reply_text",
    "message_id",
    "prompt_message",
    "user_message",
]

#: The one local user chatkeep serves in the benchmarks (``CHATKEEP_LOCAL_USER_ID``).
BENCH_USER = "bench-user"
#: The user who has 100,000 threads (scenario 5); a separate user, so no other scenario changes the count.
LIST_USER = "bench-lister"

_WORDS = [
    "latency",
    "throughput",
    "index",
    "query",
    "branch",
    "thread",
    "message",
    "stream",
    "token",
    "reply",
    "model",
    "cache",
    "pool",
    "socket",
    "buffer",
    "schema",
    "column",
    "row",
    "tree",
    "leaf",
    "parent",
    "child",
    "order",
    "cursor",
    "page",
    "batch",
    "commit",
    "lock",
    "write",
    "read",
    "json",
    "frame",
    "event",
    "loop",
    "task",
    "worker",
    "client",
    "server",
    "proxy",
    "header",
    "body",
    "chunk",
    "delta",
    "source",
    "tool",
    "input",
    "output",
    "reason",
    "answer",
]


def _sentence(seed: int, words: int) -> str:
    picked = [_WORDS[(seed * 7 + k * 13 + (seed >> 3)) % len(_WORDS)] for k in range(words)]
    return " ".join(picked).capitalize() + "."


def _paragraph(seed: int, sentences: int, words: int) -> str:
    return " ".join(_sentence(seed * 31 + s, words) for s in range(sentences))


def message_id(index: int) -> str:
    return f"msg-{index:06d}"


def user_message(index: int) -> dict[str, Any]:
    return {
        "id": message_id(index),
        "role": "user",
        "parts": [{"type": "text", "text": f"Question {index}: " + _paragraph(index, 2, 9)}],
    }


def assistant_message(index: int) -> dict[str, Any]:
    return {
        "id": message_id(index),
        "role": "assistant",
        "parts": [
            {"type": "reasoning", "text": _paragraph(index + 1, 3, 10), "state": "done"},
            {
                "type": "tool-search",
                "toolCallId": f"call-{index:06d}",
                "state": "output-available",
                "input": {"query": _sentence(index + 2, 5), "limit": 3},
                "output": {
                    "results": [
                        {
                            "title": _sentence(index + 3 + k, 4),
                            "url": f"https://example.com/doc/{index}/{k}",
                            "score": 0.9 - k / 10,
                        }
                        for k in range(3)
                    ]
                },
            },
            {"type": "text", "text": _paragraph(index + 4, 5, 12), "state": "done"},
            {
                "type": "source-url",
                "sourceId": f"src-{index:06d}",
                "url": f"https://example.com/doc/{index}/0",
                "title": _sentence(index + 3, 4),
            },
        ],
    }


def conversation(count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` messages, user first, alternating; each one's parent is the one before it."""
    return [user_message(i) if i % 2 == 0 else assistant_message(i) for i in range(start, start + count)]


def prompt_message(tag: str) -> dict[str, Any]:
    """A new user prompt for a chat turn. Its words trigger none of the demo model's special behaviours."""
    return {
        "id": f"prompt-{tag}",
        "role": "user",
        "parts": [{"type": "text", "text": f"Please summarise what we said so far about item {tag} in a few lines."}],
    }


def demo_reply_text(prompt: str) -> str:
    """What the ``demo`` model answers to a prompt without special words."""
    return f"You said: {prompt}"


def count_prompt(chunks: int) -> dict[str, Any]:
    """The prompt that makes the ``demo`` model stream ``chunks`` text chunks (``count to N``)."""
    return {"id": "prompt", "role": "user", "parts": [{"type": "text", "text": f"count to {chunks}"}]}


def count_reply_text(chunks: int) -> str:
    return " ".join(str(i) for i in range(1, chunks + 1))
