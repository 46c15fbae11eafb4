"""What a ``POST /api/chat`` asks for, decided against what is stored.

The request carries either the whole branch the client shows (``messages``, useChat's default) or only its last
message (``message``, when the app sends only the last one). Its last message decides the turn:

* a **user message not stored yet**: a new prompt (``submit-message``). Its parent is the message before it in
  ``messages`` (or the thread's active leaf, with ``message``), so an edit made the assistant-ui way (a new
  message after the edited one's parent) becomes a sibling of the edited message;
* a **stored user message** with the same content: regenerate the reply to it (a new sibling of the old reply);
* a **stored user message with new content** (useChat's ``sendMessage({text, messageId})`` keeps the id): an edit.
  The old version and the branch under it keep living under a new id; the client's id names the new version;
* a **stored assistant message**: a continuation after client-side tool results (or approvals). Only its tool
  parts may change, from waiting for a result to having one; the reply continues the same message.

Clients may not forge history: an assistant or system message that is not stored is refused, so is a stored
message sent with another role, and the model always sees the stored content of stored messages, not what the
client sent.
Being stored is not authority, though: the history API stores whatever a client sends, so the approval answers of
a continuation are checked against the server's own record of the requests it made (:mod:`chatkeep.chat.approvals`).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chatkeep.chat.convert import tool_name
from chatkeep.errors import Conflict, InvalidInput, ValidationIssue
from chatkeep.protocol.messages import content_of
from chatkeep.store.records import MessageTree

__all__ = ["TurnKind", "TurnPlan", "plan_turn"]

TurnKind = Literal["submit", "regenerate", "edit", "continue"]

# What a client may do to a stored tool part in a continuation: answer a client-side tool's call, or answer an
# approval request (the server then runs or denies the tool itself).
_CLIENT_ANSWERS = frozenset({"output-available", "output-error"})


@dataclass(frozen=True, slots=True)
class TurnPlan:
    kind: TurnKind
    #: user messages to store before the model runs, in order, each with its parent
    new_user_messages: Sequence[tuple[dict[str, Any], str | None]]
    #: the UIMessages the model sees, oldest first (the branch up to the prompt)
    history: Sequence[Mapping[str, Any]]
    #: the parent of the reply (for a continuation: the parent of the continued message)
    reply_parent: str | None
    #: the assistant message being continued (with the client's tool results merged in), else None
    continued: dict[str, Any] | None = None


def _forged(index: int, role: str) -> InvalidInput:
    return InvalidInput(
        [
            ValidationIssue(
                ("body", "messages", index),
                f"this {role} message is not stored in the thread; clients may not add {role} messages",
                "forged_history",
            )
        ]
    )


def _role_changed(index: int, stored_role: Any, role: str) -> InvalidInput:
    return InvalidInput(
        [
            ValidationIssue(
                ("body", "messages", index, "role"),
                f"this message is stored as a {stored_role} message; it cannot be sent as a {role} message",
                "forged_history",
            )
        ]
    )


def plan_turn(
    tree: MessageTree,
    *,
    messages: Sequence[Mapping[str, Any]] | None,
    message: Mapping[str, Any] | None,
    trigger: str | None,
    client_tools: Container[str] = frozenset(),
) -> TurnPlan:
    """Decide the turn (see the module docstring). ``messages``/``message`` are validated UIMessages;
    ``client_tools`` names the tools whose results the client may supply."""
    stored = {m.id: m for m in tree.messages}

    if message is not None:
        branch = [m.ui_message() for m in tree.branch()]
        if message["id"] in stored:
            # Cut the stored branch at the message itself, if it is on it; otherwise use its own ancestry.
            path = [m.ui_message() for m in tree.branch(message["id"])]
            prefix = path[:-1]
        else:
            prefix = branch
        last_index = len(prefix)
        client: list[Mapping[str, Any]] = [*prefix, message]
    else:
        assert messages is not None
        client = list(messages)
        last_index = len(client) - 1
        prefix = []
        for index, item in enumerate(client[:-1]):
            known = stored.get(item["id"])
            if known is not None:
                if known.content.get("role") != item["role"]:
                    raise _role_changed(index, known.content.get("role"), item["role"])
                prefix.append(known.ui_message())
            elif item["role"] == "user":
                prefix.append(dict(item))
            else:
                raise _forged(index, item["role"])

    last = client[-1]
    known_last = stored.get(last["id"])
    if known_last is not None and known_last.content.get("role") != last["role"]:
        raise _role_changed(last_index, known_last.content.get("role"), last["role"])
    new_users: list[tuple[dict[str, Any], str | None]] = []
    parent: str | None = None
    for item in prefix:
        if item["id"] not in stored:
            new_users.append((dict(item), parent))
        parent = item["id"]

    if last["role"] == "user":
        if known_last is None:
            new_users.append((dict(last), parent))
            return TurnPlan("submit", new_users, [*prefix, dict(last)], last["id"])
        if content_of(last) == known_last.content or trigger == "regenerate-message":
            return TurnPlan("regenerate", new_users, [*prefix, known_last.ui_message()], last["id"])
        new_users.append((dict(last), known_last.parent_id))
        return TurnPlan("edit", new_users, [*prefix, dict(last)], last["id"])

    if last["role"] == "assistant" and known_last is not None:
        merged = _merge_client_tool_results(known_last.ui_message(), last, last_index, client_tools)
        return TurnPlan("continue", new_users, [*prefix, merged], known_last.parent_id, continued=merged)

    raise _forged(last_index, last["role"])


def _answers(mine: Mapping[str, Any], theirs: Mapping[str, Any], client_tools: Container[str]) -> bool:
    """Whether ``theirs`` is an allowed answer to the stored tool part ``mine``."""
    if "toolCallId" not in mine or any(mine.get(k) != theirs.get(k) for k in ("toolCallId", "type", "input")):
        return False
    if mine.get("state") == "approval-requested":
        approval = theirs.get("approval") or {}
        return theirs.get("state") == "approval-responded" and approval.get("id") == mine["approval"]["id"]
    name = tool_name(mine)
    return mine.get("state") == "input-available" and theirs.get("state") in _CLIENT_ANSWERS and name in client_tools


def _merge_client_tool_results(
    stored: dict[str, Any], client: Mapping[str, Any], index: int, client_tools: Container[str]
) -> dict[str, Any]:
    """The stored message with the tool results the client added; anything else changed is a conflict."""
    stored_parts: list[dict[str, Any]] = stored["parts"]
    client_parts: Sequence[Mapping[str, Any]] = client["parts"]
    if len(client_parts) < len(stored_parts):
        raise Conflict("The client's copy of the assistant message is missing parts the server stored.")
    merged: list[dict[str, Any]] = []
    for position, (mine, theirs) in enumerate(zip(stored_parts, client_parts, strict=False)):
        if mine == theirs:
            merged.append(mine)
            continue
        if _answers(mine, theirs, client_tools):
            merged.append(dict(theirs))
            continue
        raise InvalidInput(
            [
                ValidationIssue(
                    ("body", "messages", index, "parts", position),
                    "only the results of client-side tools and answers to approval requests may be added to a "
                    "stored assistant message",
                    "forged_history",
                )
            ]
        )
    if len(client_parts) > len(stored_parts):
        raise InvalidInput(
            [
                ValidationIssue(
                    ("body", "messages", index, "parts", len(stored_parts)),
                    "clients may not add parts to an assistant message",
                    "forged_history",
                )
            ]
        )
    return {**stored, "parts": merged}
