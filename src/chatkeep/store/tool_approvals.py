"""``ToolApprovals``: the tool calls the server asked a user to approve, exactly as the model made them.

A stored message is what a client says it is (the history API stores any message), so an ``approval-requested``
tool part proves nothing. This record does: the chat service writes it before the request reaches any client,
no route writes it otherwise, and an approval answer is checked against it. Guarantees:

* **The server's word only.** A request is recorded with the tool's name and the input the model gave; the tool
  runs with that input, whatever a stored message says since.
* **Answered once.** :meth:`ToolApprovals.answer` changes a waiting request to its answer atomically, so two
  answers racing (or one replayed) run an approved call at most once.
* **Scoped to a user.** Every method takes the user id and filters by the thread's owner; on PostgreSQL row-level
  security (migration 0005) enforces the same. Another user's approval id is simply not found.
* A request goes with its thread (``ON DELETE CASCADE``), not with its message: a reply is stored after its
  approval requests are made, and may be rebuilt from its chunks by the stream sweep.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, exists, insert, select, update

from chatkeep.errors import ThreadNotFound
from chatkeep.store._db import Database, uncancellable
from chatkeep.store.models import ThreadRow, ToolApprovalRow

__all__ = ["ApprovalRequest", "ToolApprovals"]

_A = cast(Table, ToolApprovalRow.__table__)
_T = cast(Table, ThreadRow.__table__)
_COLUMNS = (_A.c.approval_id, _A.c.tool_call_id, _A.c.tool_name, _A.c.input, _A.c.approved)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A tool call the server asked the user to approve. ``approved`` is ``None`` while it waits."""

    approval_id: str
    tool_call_id: str
    tool_name: str
    input: Any
    approved: bool | None = None


def _request(row: Any) -> ApprovalRequest:
    return ApprovalRequest(row.approval_id, row.tool_call_id, row.tool_name, row.input, row.approved)


def _in_thread_of(user_id: str, thread_id: str) -> ColumnElement[bool]:
    """The rows of the thread ``thread_id`` if it is the user's (none otherwise)."""
    return and_(_A.c.thread_id == thread_id, exists().where(_T.c.id == _A.c.thread_id, _T.c.user_id == user_id))


class ToolApprovals(Database):
    @uncancellable
    async def record(self, user_id: str, thread_id: str, requests: Sequence[ApprovalRequest]) -> None:
        """Record ``requests``, waiting, in the user's thread, in one transaction; :class:`ThreadNotFound` when
        the thread is not theirs (or was deleted meanwhile)."""
        if not requests:
            return
        async with self._write(user_id) as conn:
            owned = select(_T.c.id).where(_T.c.id == thread_id, _T.c.user_id == user_id)
            if (await conn.execute(owned)).first() is None:
                raise ThreadNotFound(thread_id)
            now = datetime.now(UTC)
            await conn.execute(
                insert(_A),
                [
                    {
                        "thread_id": thread_id,
                        "approval_id": r.approval_id,
                        "tool_call_id": r.tool_call_id,
                        "tool_name": r.tool_name,
                        "input": r.input,
                        "created_at": now,
                    }
                    for r in requests
                ],
            )

    async def find(self, user_id: str, thread_id: str, approval_ids: Collection[str]) -> dict[str, ApprovalRequest]:
        """The requests recorded under ``approval_ids`` in the user's thread (waiting or answered), by approval id.
        An id the server never made, or made in another thread or for another user, is not in the result."""
        if not approval_ids:
            return {}
        query = select(*_COLUMNS).where(_in_thread_of(user_id, thread_id), _A.c.approval_id.in_(list(approval_ids)))
        async with self._read(user_id) as conn:
            return {row.approval_id: _request(row) for row in await conn.execute(query)}

    @uncancellable
    async def answer(self, user_id: str, thread_id: str, answers: Mapping[str, bool]) -> dict[str, ApprovalRequest]:
        """Give each waiting request in ``answers`` (approval id → approved) its answer, in one transaction; return
        those, with their answer. A request answered already, or never recorded, is left out and unchanged: an
        approval leads to at most one run."""
        answered: dict[str, ApprovalRequest] = {}
        if not answers:
            return answered
        now = datetime.now(UTC)
        async with self._write(user_id) as conn:
            for approved in (True, False):
                ids = [approval_id for approval_id, given in answers.items() if given is approved]
                if not ids:
                    continue
                statement = (
                    update(_A)
                    .where(_in_thread_of(user_id, thread_id), _A.c.approval_id.in_(ids), _A.c.approved.is_(None))
                    .values(approved=approved, answered_at=now)
                    .returning(*_COLUMNS)
                )
                answered.update((row.approval_id, _request(row)) for row in await conn.execute(statement))
        return answered
