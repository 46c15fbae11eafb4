"""Approval answers, checked against the server's record of the approval requests it made.

A stored assistant message carries no authority: the history API stores whatever a client sends (assistant-ui
writes replies itself), so an ``approval-requested`` part, its tool, its input and even an ``approval-responded``
state may all be the client's invention. What counts is :class:`~chatkeep.store.ToolApprovals`, which only the
chat service writes, when it asks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chatkeep.chat.convert import tool_name
from chatkeep.chat.plan import TurnPlan
from chatkeep.errors import Conflict, InvalidInput, ValidationIssue
from chatkeep.store import ToolApprovals

__all__ = ["check_approvals"]


async def check_approvals(
    approvals: ToolApprovals, user_id: str, thread_id: str, plan: TurnPlan, loc: tuple[str | int, ...]
) -> TurnPlan:
    """``plan``, a continuation (at ``loc`` in the request), checked against the record: every approved tool part
    must answer a request the server made in this thread, for that call of that tool (else 422
    ``forged_history``, nothing stored), which still waits (else 409). In the plan returned, each approved part
    has the recorded input, whatever the stored message says: the continued message is stored, shown to the model
    and run with it. Denials need no record: they run nothing.

    A read only: the answer itself is recorded when the turn runs (:meth:`ToolApprovals.answer`), atomically."""
    assert plan.continued is not None
    parts: list[dict[str, Any]] = plan.continued["parts"]
    approved = {
        index: part["approval"]["id"]
        for index, part in enumerate(parts)
        if part.get("state") == "approval-responded" and part["approval"].get("approved")
    }
    if not approved:
        return plan
    recorded = await approvals.find(user_id, thread_id, set(approved.values()))
    issues: list[ValidationIssue] = []
    checked = list(parts)
    for index, approval_id in approved.items():
        part, request = parts[index], recorded.get(approval_id)
        if request is None or (request.tool_call_id, request.tool_name) != (part["toolCallId"], tool_name(part)):
            issues.append(
                ValidationIssue(
                    (*loc, "parts", index, "approval", "id"),
                    "the server asked no such approval in this thread; only its own approval requests can be approved",
                    "forged_history",
                )
            )
        elif request.approved is not None:
            raise Conflict(f"The approval of the tool call {request.tool_call_id!r} was answered already.")
        elif part.get("input") != request.input:
            checked[index] = {**part, "input": request.input}
    if issues:
        raise InvalidInput(issues)
    continued = {**plan.continued, "parts": checked}
    return dataclasses.replace(plan, history=[*plan.history[:-1], continued], continued=continued)
