"""Running one planned turn: the model → tools → model loop, each chunk streamed and applied to the reply, and the
reply stored with how it ended.

Guarantees (:class:`TurnRunner`, the part of :class:`~chatkeep.chat.service.ChatService` that runs a turn once it
is planned and its prompt stored):

* **Generation does not depend on the HTTP connection.** It runs in its own task and writes to a channel the
  response reads; if the client goes away, the reply still completes and is stored in full.
* **What is stored is what the client builds**: every chunk goes through the same reducer
  (:class:`MessageAssembler`) before it is sent.
* **A tool runs only for a call the server made, with the input the model gave.** A stored message proves
  nothing (the history API stores what clients send): an approval request is recorded (:class:`ToolApprovals`)
  before any client sees it, an approval answer counts only for a recorded request still waiting, and the tool
  runs, at most once, with the recorded input. Results a client sends are accepted only for client-side tools.
* A failing model or tool never breaks the stream: a tool failure is an ``output-error`` part the model sees; a
  model failure ends the stream with an ``error`` chunk after closing open parts, and the reply is stored with
  status ``error``: what was produced so far (possibly nothing) and the error text (:data:`ERROR_METADATA`), so a
  reload shows what failed and a regeneration (a new sibling reply) retries it.
* **The stream's chunk log is the checkpoint.** Every chunk is in the database within ``StreamHub``'s flush
  interval (200 ms, one transaction for all the process's streams); if the process dies, the stream sweep (of
  any process) rebuilds the reply from its chunks and stores it ``interrupted``.
* A database outage does not break a turn that has started: the model goes on, and the final store is retried
  for up to ``store_retry_for`` seconds. A reply is therefore stored either in full with its final status, or,
  if the database stays away longer (or the process dies), rebuilt from its logged chunks and marked
  ``interrupted`` by the stream sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from chatkeep.chat.convert import to_model_messages, tool_name
from chatkeep.chat.plan import TurnPlan
from chatkeep.chat.streams import LiveStream, StreamHub
from chatkeep.errors import DatabaseUnavailable, ParentNotFound, ThreadNotFound
from chatkeep.protocol.ids import generate_id
from chatkeep.protocol.messages import content_of
from chatkeep.protocol.stream import MessageAssembler, StreamFeatures, encode_sse
from chatkeep.providers.base import (
    Data,
    Finish,
    Model,
    ModelError,
    ModelEvent,
    ModelMessage,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    Source,
    TextDelta,
    TextEnd,
    TextStart,
    ToolCall,
    ToolCallContent,
    ToolInputDelta,
    ToolInputStart,
    ToolResult,
    ToolResultContent,
)
from chatkeep.store import ApprovalRequest, ChatStore, ToolApprovals
from chatkeep.tools import Tool, ToolError, ToolRegistry

__all__ = ["ERROR_METADATA", "TurnRunner"]

#: A reply that failed (stored with status ``error``) says why in its UIMessage metadata, under this key:
#: ``{"chatkeep": {"error": "<a message safe to show>"}}``. It reaches the client in the stream too (a
#: ``message-metadata`` chunk just before the ``error`` chunk), so the client's copy of the reply and the stored
#: one stay the same.
ERROR_METADATA = "chatkeep"

log = logging.getLogger("chatkeep.chat")


class TurnRunner:
    """Generates and stores the reply of a planned turn (:meth:`_run`); :class:`~chatkeep.chat.service.ChatService`
    is one, and sets the attributes below (see its docstring for what they mean). A turn reads them when it
    runs, so a change applies to the turns that start after it."""

    store: ChatStore
    model: Model
    tools: ToolRegistry
    max_steps: int
    system_prompt: str | None
    features: StreamFeatures
    hub: StreamHub
    approvals: ToolApprovals
    checkpoint_interval: float | None
    model_timeout: float
    store_retry_for: float
    #: the names of the tools the client runs (registered without ``execute``)
    _client_tools: frozenset[str]

    def reply_stored(self, user_id: str, thread_id: str) -> None:
        """Called once the reply to the thread's first message is stored, before its stream ends."""

    async def _run(self, user_id: str, thread_id: str, message_id: str, plan: TurnPlan, live: LiveStream) -> None:
        assembler = MessageAssembler(message_id, base=plan.continued)
        # With checkpoints, a task of their own, woken by ``changed`` and ended by ``ending`` (none without).
        changed = ending = None
        checkpoints: asyncio.Task[None] | None = None
        if self.checkpoint_interval:
            changed, ending = asyncio.Event(), asyncio.Event()
            checkpoints = asyncio.create_task(
                self._checkpoints(user_id, thread_id, plan, live, assembler, changed, ending)
            )

        def emit(chunk: dict[str, Any]) -> None:
            assembler.apply(chunk)
            self.hub.emit(live, encode_sse(chunk))
            if changed is not None:
                changed.set()

        status: str | None = None
        try:
            emit({"type": "start", "messageId": message_id})
            if plan.continued is not None:
                await self._answer_approvals(user_id, thread_id, assembler, emit)
            history = [*plan.history[:-1], assembler.message] if plan.continued is not None else plan.history
            reason = await self._steps(user_id, thread_id, history, assembler, emit)
            finish: dict[str, Any] = {"type": "finish"}
            if self.features.finish_reason:
                finish["finishReason"] = reason
            emit(finish)
        except asyncio.CancelledError:
            # Stopped by a user ("stop") or by this process shutting down ("shutdown").
            status = "aborted" if live.stop_reason == "stop" else "interrupted"
            self._close_open_parts(assembler, emit)
            self._fail_running_tools(assembler, emit, "The tool call was stopped.")
            emit({"type": "abort"})
            if live.stop_reason is None:
                raise
        except ModelError as exc:
            log.warning("model failed in thread %s: %s", thread_id, exc.message)
            status = "error"
            self._fail(assembler, emit, exc.message, "The tool call did not finish: the model failed.")
        except Exception:
            log.exception("chat turn failed in thread %s", thread_id)
            status = "error"
            self._fail(assembler, emit, "An error occurred.", "The tool call did not finish.")
        finally:
            # Let a checkpoint being written finish rather than cancel it: writes run to their end even when
            # cancelled (store._db.uncancellable), and one committed after the final store would put back a partial
            # reply marked streaming.
            if checkpoints is not None and changed is not None and ending is not None:
                ending.set()
                changed.set()
                try:
                    await checkpoints
                except BaseException:
                    checkpoints.cancel()
                    raise
            # Store first, then end the stream: a client that reads the thread as soon as the stream ends must
            # find the reply there.
            try:
                stored = await self._store_final(user_id, thread_id, plan, live, assembler, status)
            except BaseException:  # cancelled while waiting for the database (this process shuts down)
                self.hub.abandon(live)
                raise
            if stored == "stored":
                if status != "interrupted" and _answers_first_message(plan):
                    self.reply_stored(user_id, thread_id)  # before the stream ends: see ChatService.title
                await self.hub.finish(live, "done" if status is None else status)
            else:
                emit({"type": "error", "errorText": "The reply could not be saved in full."})
                if stored == "later":
                    self.hub.abandon(live)
                else:  # the sweep could do no better: end the stream, with the loss in the log
                    await self.hub.finish(live, "error")

    async def _checkpoints(
        self,
        user_id: str,
        thread_id: str,
        plan: TurnPlan,
        live: LiveStream,
        assembler: MessageAssembler,
        changed: asyncio.Event,
        ending: asyncio.Event,
    ) -> None:
        """Store the reply so far, marked ``streaming``, at most every ``checkpoint_interval``: if the process
        dies, the reply is kept up to that point (and marked ``interrupted`` by the next process).

        Runs until ``ending`` is set, whatever fails, and returns only between two writes, so that no checkpoint
        is written after the final store. A checkpoint that cannot be written (the database is unavailable) is
        tried again one interval later, with whatever the reply has become by then."""
        database_down = False
        while True:
            await changed.wait()  # set with ``ending`` too
            if ending.is_set():
                return
            changed.clear()
            try:
                await self._store_reply(user_id, thread_id, plan, live, assembler, "streaming")
                database_down = False
            except DatabaseUnavailable as exc:
                changed.set()
                if not database_down:
                    log.warning("could not checkpoint the reply in thread %s; will retry: %s", thread_id, exc)
                database_down = True
            except Exception:
                log.exception("could not checkpoint the reply in thread %s", thread_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ending.wait(), self.checkpoint_interval)

    async def _store_final(
        self,
        user_id: str,
        thread_id: str,
        plan: TurnPlan,
        live: LiveStream,
        assembler: MessageAssembler,
        status: str | None,
    ) -> Literal["stored", "later", "lost"]:
        """Store the reply with its final ``status``: ``"stored"`` once it is (or there was nothing to store, or
        its thread was deleted meanwhile).

        While the database is unavailable, it tries again after 0.1 s, doubling up to 2 s, for up to
        ``store_retry_for`` seconds (an upsert of the whole reply in one transaction: repeating it is harmless,
        even after a COMMIT whose answer was lost). ``"later"`` when the database stayed away that long: the
        stream sweep then rebuilds the reply from its logged chunks (or closes its last checkpoint, with
        ``checkpoint_interval``) and marks it ``interrupted``. ``"lost"`` when the store refused the reply for
        another reason (logged), which a rebuild would meet again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.store_retry_for
        delay = 0.1
        while True:
            try:
                await self._store_reply(user_id, thread_id, plan, live, assembler, status)
                return "stored"
            except DatabaseUnavailable as exc:
                left = deadline - loop.time()
                if left <= 0:
                    log.error(
                        "could not store the reply %s in thread %s within %g s (%s): the sweep rebuilds it later",
                        assembler.message["id"], thread_id, self.store_retry_for, exc,
                    )  # fmt: skip
                    return "later"
                if delay == 0.1:
                    log.warning(
                        "the database is unavailable; the reply in thread %s is stored once it is back", thread_id
                    )
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 2.0)
            except Exception:
                log.exception("could not store the reply %s in thread %s", assembler.message["id"], thread_id)
                return "lost"

    async def _store_reply(
        self,
        user_id: str,
        thread_id: str,
        plan: TurnPlan,
        live: LiveStream,
        assembler: MessageAssembler,
        status: str | None,
    ) -> None:
        """One attempt to store the reply as it is now with ``status``, in one transaction (all its parts or
        nothing), under the turn's prompt; or, when that is no longer its place (:class:`ParentNotFound`: the
        prompt, or the continued message's parent, was deleted meanwhile), where the reply's stream says it goes
        now (:meth:`StreamLog.store_reply`: under the nearest message left). Raises what the store raises, except
        :class:`ThreadNotFound` (the thread was deleted meanwhile: there is nothing to keep)."""
        reply = assembler.message
        if not reply["parts"] and plan.continued is None and status != "error":
            return  # nothing to keep; a failed reply is kept even so: it says what failed
        content = content_of(reply)
        try:
            try:
                await self.store.upsert_message(
                    user_id, thread_id, message_id=reply["id"], parent_id=plan.reply_parent, content=content,
                    status=status,
                )  # fmt: skip
            except ParentNotFound:
                await self.hub.log.store_reply(
                    live.id, user_id=user_id, thread_id=thread_id, message_id=reply["id"], content=content,
                    status=status,
                )  # fmt: skip
        except ThreadNotFound:
            log.info("thread %s was deleted while its reply %s was generated", thread_id, reply["id"])

    def _fail(
        self, assembler: MessageAssembler, emit: Callable[[dict[str, Any]], None], error_text: str, tool_reason: str
    ) -> None:
        """End a failed reply: close its open parts and running tool calls, record ``error_text`` in its metadata
        (:data:`ERROR_METADATA`), so the stored reply says why it failed, then send the ``error`` chunk (which
        ends the client's reading: anything after it would be dropped)."""
        self._close_open_parts(assembler, emit)
        self._fail_running_tools(assembler, emit, tool_reason)
        emit({"type": "message-metadata", "messageMetadata": {ERROR_METADATA: {"error": error_text}}})
        emit({"type": "error", "errorText": error_text})

    @staticmethod
    def _close_open_parts(assembler: MessageAssembler, emit: Callable[[dict[str, Any]], None]) -> None:
        texts, reasonings = assembler.open_part_ids()
        for part_id in texts:
            emit({"type": "text-end", "id": part_id})
        for part_id in reasonings:
            emit({"type": "reasoning-end", "id": part_id})

    def _fail_running_tools(
        self, assembler: MessageAssembler, emit: Callable[[dict[str, Any]], None], reason: str
    ) -> None:
        """Give every tool call of the reply that was still under way an ``output-error``, so no stored part
        waits forever for a result that will not come. Calls waiting for the client or for an approval are left
        as they are: those are answered by the next request."""
        for part in assembler.parts:
            name = tool_name(part)
            if name is None:
                continue
            state = part.get("state")
            running = state == "input-streaming" or (
                state == "input-available"
                and (part.get("providerExecuted") or (name in self.tools and name not in self._client_tools))
            )
            if running:
                emit({"type": "tool-output-error", "toolCallId": part["toolCallId"], "errorText": reason})

    async def _answer_approvals(
        self, user_id: str, thread_id: str, assembler: MessageAssembler, emit: Callable[[dict[str, Any]], None]
    ) -> None:
        """Run (or deny) the tool calls whose approval the client has just answered, before the model goes on.

        The answers are recorded first, atomically (:meth:`ToolApprovals.answer`): an approved call runs only if
        its request was the server's and still waited (:func:`check_approvals` checked it; a concurrent answer
        may have taken it since), once, with the recorded tool and input, never the stored part's."""
        pending = [part for part in assembler.parts if part.get("state") == "approval-responded"]
        if not pending:
            return
        answers = {part["approval"]["id"]: bool(part["approval"].get("approved")) for part in pending}
        granted = await self.approvals.answer(user_id, thread_id, answers)
        for part in pending:
            call_id = part["toolCallId"]
            if not part["approval"].get("approved"):
                emit({"type": "tool-output-denied", "toolCallId": call_id})
                continue
            # popped: one approval runs one call, even if a stored message repeats its part
            request = granted.pop(part["approval"]["id"], None)
            output: Any = None
            if request is None:
                error: str | None = "This approval was answered already; the tool did not run again."
            else:
                tool = self.tools.get(request.tool_name)
                error = f"Tool {request.tool_name!r} cannot run on the server."
                if tool is not None and tool.execute is not None:
                    call = ToolCall(request.tool_call_id, request.tool_name, request.input)
                    output, error = await self._execute(tool, call)
            if error is not None:
                emit({"type": "tool-output-error", "toolCallId": call_id, "errorText": error})
            else:
                emit({"type": "tool-output-available", "toolCallId": call_id, "output": output})

    async def _steps(
        self,
        user_id: str,
        thread_id: str,
        messages: Sequence[Mapping[str, Any]],
        assembler: MessageAssembler,
        emit: Callable[[dict[str, Any]], None],
    ) -> str:
        """The model → tools → model loop; returns the finish reason of the last step."""
        history: list[ModelMessage] = []
        if self.system_prompt:
            system = {"role": "system", "parts": [{"type": "text", "text": self.system_prompt}]}
            history.extend(to_model_messages([system]))
        history.extend(to_model_messages(messages))
        reason = "stop"
        model = self.model
        specs = self.tools.specs()
        for _step in range(self.max_steps):
            # The step opens with the model's first event, so a model that fails before saying anything leaves
            # no empty step (and no empty reply) behind.
            started = False
            calls: list[ToolCall] = []
            finish: Finish | None = None
            events = model.stream(ModelRequest(messages=history, tools=specs))
            watchdog = _IdleWatchdog(self.model_timeout)
            try:
                # Only the wait for the model's next event is timed: nothing below awaits anything else.
                async for event in events:
                    watchdog.touch()
                    if not started:
                        emit({"type": "start-step"})
                        started = True
                    if isinstance(event, Finish):
                        finish = event
                        break
                    if isinstance(event, ToolCall) and not event.provider_executed:
                        calls.append(event)
                    self._emit_event(event, emit)
            except asyncio.CancelledError:
                if watchdog.expired and watchdog.task.uncancel() == 0:
                    raise ModelError(
                        f"The model stopped responding (nothing for {self.model_timeout:g} s).", retryable=True
                    ) from None
                raise
            finally:
                # The watchdog stops timing this task now; and the model's stream is closed now (its HTTP response,
                # say), not whenever it is garbage collected.
                watchdog.close()
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()
            if not started:
                emit({"type": "start-step"})
            self._close_open_parts(assembler, emit)
            results, waiting_for_client = await self._run_tools(user_id, thread_id, calls, emit)
            emit({"type": "finish-step"})
            reason = finish.reason if finish is not None else "other"
            if not calls or waiting_for_client or finish is None or finish.reason != "tool-calls":
                return reason
            history.append(
                ModelMessage("assistant", [ToolCallContent(c.tool_call_id, c.tool_name, c.input) for c in calls])
            )
            history.append(ModelMessage("tool", results))
        return reason

    def _emit_event(self, event: ModelEvent, emit: Callable[[dict[str, Any]], None]) -> None:
        match event:
            case TextStart(id=part_id):
                emit({"type": "text-start", "id": part_id})
            case TextDelta(id=part_id, delta=delta):
                emit({"type": "text-delta", "id": part_id, "delta": delta})
            case TextEnd(id=part_id):
                emit({"type": "text-end", "id": part_id})
            case ReasoningStart(id=part_id):
                emit({"type": "reasoning-start", "id": part_id})
            case ReasoningDelta(id=part_id, delta=delta):
                emit({"type": "reasoning-delta", "id": part_id, "delta": delta})
            case ReasoningEnd(id=part_id):
                emit({"type": "reasoning-end", "id": part_id})
            case ToolInputStart(tool_call_id=call_id, tool_name=name):
                emit({"type": "tool-input-start", "toolCallId": call_id, "toolName": name})
            case ToolInputDelta(tool_call_id=call_id, delta=delta):
                emit({"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": delta})
            case ToolCall(tool_call_id=call_id, tool_name=name, input=value, provider_executed=executed):
                call_chunk = {"type": "tool-input-available", "toolCallId": call_id, "toolName": name, "input": value}
                if executed:
                    call_chunk["providerExecuted"] = True
                emit(call_chunk)
            case ToolResult(tool_call_id=call_id, output=output, is_error=is_error):
                if is_error:
                    emit({"type": "tool-output-error", "toolCallId": call_id, "errorText": str(output)})
                else:
                    emit({"type": "tool-output-available", "toolCallId": call_id, "output": output})
            case Data(name=name, data=data, id=data_id, transient=transient):
                data_chunk: dict[str, Any] = {"type": f"data-{name}", "data": data}
                if data_id is not None:
                    data_chunk["id"] = data_id
                if transient:
                    data_chunk["transient"] = True
                emit(data_chunk)
            case Source(source_id=source_id, url=url, title=title):
                chunk: dict[str, Any] = {"type": "source-url", "sourceId": source_id, "url": url}
                if title is not None:
                    chunk["title"] = title
                emit(chunk)

    async def _run_tools(
        self, user_id: str, thread_id: str, calls: Sequence[ToolCall], emit: Callable[[dict[str, Any]], None]
    ) -> tuple[list[ToolResultContent], bool]:
        """Run the server-side tools of one step; returns their results and whether the client must act (a
        client-side tool's call, or an approval request, waits).

        Approval requests are recorded (:class:`ToolApprovals`) before they are sent and before the other tools
        run: a request any client, the chunk log or a stored reply can show is one the server has on record."""
        tools = [self.tools.get(call.tool_name) for call in calls]
        gated = [
            ApprovalRequest(generate_id("approval"), call.tool_call_id, call.tool_name, call.input)
            for call, tool in zip(calls, tools, strict=True)
            if tool is not None and tool.execute is not None and tool.needs_approval
        ]
        if gated:
            await self.approvals.record(user_id, thread_id, gated)
        for request in gated:
            emit(
                {"type": "tool-approval-request", "approvalId": request.approval_id, "toolCallId": request.tool_call_id}
            )
        waiting = bool(gated) or any(tool is not None and tool.execute is None for tool in tools)
        runs = [
            (call, tool)
            for call, tool in zip(calls, tools, strict=True)
            if tool is None or (tool.execute is not None and not tool.needs_approval)
        ]
        results: list[ToolResultContent] = []
        outcomes = await asyncio.gather(*(self._run_tool(call, tool) for call, tool in runs))
        for (call, _tool), (output, error) in zip(runs, outcomes, strict=True):
            if error is not None:
                emit({"type": "tool-output-error", "toolCallId": call.tool_call_id, "errorText": error})
                results.append(ToolResultContent(call.tool_call_id, call.tool_name, error, is_error=True))
            else:
                emit({"type": "tool-output-available", "toolCallId": call.tool_call_id, "output": output})
                results.append(ToolResultContent(call.tool_call_id, call.tool_name, output))
        return results, waiting

    async def _run_tool(self, call: ToolCall, tool: Tool | None) -> tuple[Any, str | None]:
        if tool is None:
            return None, f"Unknown tool {call.tool_name!r}."
        return await self._execute(tool, call)

    async def _execute(self, tool: Tool, call: ToolCall) -> tuple[Any, str | None]:
        try:
            return await tool.run(call.input), None
        except ToolError as exc:
            return None, str(exc)
        except Exception as exc:  # a tool's own bug: reported to the model, logged for the operator
            log.exception("tool %s failed", call.tool_name)
            return None, f"Tool {call.tool_name} failed: {type(exc).__name__}"


def _answers_first_message(plan: TurnPlan) -> bool:
    """Whether the turn's reply answers the thread's first user message (its history holds no other)."""
    users = 0
    for message in plan.history:  # oldest first: a later turn is told at its second user message
        if message["role"] == "user":
            users += 1
            if users > 1:
                return False
    return users == 1


class _IdleWatchdog:
    """Cancels the task that made it when :meth:`touch` has not been called for ``seconds`` (then
    :attr:`expired`): a model stream nobody feeds must not stay open forever.

    One timer per stream, not a timeout per event: an event only notes the time, and the timer, when it fires,
    either finds the stream idle or sets itself again for the new deadline. (``asyncio.timeout`` around each event
    pushed and cancelled a timer on the event loop's heap per chunk, a tenth of the CPU of 1,000 streams; an async
    generator around the model's stream cost a generator step per chunk.) The task must await nothing but the
    model between two touches, so that the timer can only interrupt the wait for the model, and :meth:`close` the
    watchdog before it awaits anything else.
    """

    __slots__ = ("_loop", "task", "_seconds", "_last", "_timer", "expired")

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self._seconds = seconds
        self._last = self._loop.time()
        self.expired = False
        self._timer = self._loop.call_at(self._last + seconds, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    def close(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        if self._loop.time() - self._last >= self._seconds:
            self.expired = True
            self.task.cancel()
        else:
            self._timer = self._loop.call_at(self._last + self._seconds, self._check)
