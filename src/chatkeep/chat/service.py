"""One chat turn: check what the client sent, plan the turn, store the prompt, and start generating the reply.

Guarantees:

* **The user message is stored before the model is called**, and every id is decided on the server: the reply's
  id is generated here and is the ``messageId`` of the stream's first chunk (``start``).
* Nothing is written for a request that is refused: the messages are validated and the turn planned first, and the
  prompt (with the reply stream's row) is stored in one transaction.
* How the reply is then generated, streamed and stored, whatever fails: :mod:`chatkeep.chat.runner`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from chatkeep.chat.approvals import check_approvals
from chatkeep.chat.convert import tool_name
from chatkeep.chat.plan import TurnPlan, plan_turn
from chatkeep.chat.runner import TurnRunner
from chatkeep.chat.streams import LiveStream, StreamHub
from chatkeep.chat.titles import MAX_TITLE_LENGTH, AutoTitler, generate_title
from chatkeep.errors import InvalidInput, ThreadNotFound, ValidationIssue
from chatkeep.protocol.ids import generate_id
from chatkeep.protocol.messages import content_of, is_ai_sdk_format, parse_ui_message
from chatkeep.protocol.stream import StreamFeatures
from chatkeep.providers.base import Model
from chatkeep.store import ChatStore, MessageTree, MessageWrite, NewStream, ToolApprovals
from chatkeep.store.streams import StreamLog
from chatkeep.tools import ToolRegistry

__all__ = ["ChatService", "Turn"]


@dataclass
class Turn:
    """A started turn: the reply's id and its stream of SSE bytes (ending with ``data: [DONE]``)."""

    thread_id: str
    message_id: str
    stream: LiveStream = field(repr=False)

    def sse(self) -> AsyncIterator[bytes]:
        return self.stream.follow()


class ChatService(TurnRunner):
    """Runs chat turns for one store, one model resolver and one set of tools.

    ``max_steps`` bounds the model → tools → model loop; ``features`` says which newer stream chunks the clients
    accept. Messages the client sends that the server has not stored are validated as ``validateUIMessages``
    does: tool inputs against the registered tools' schemas, and, when given, ``metadata`` against
    ``metadata_schema`` and every ``data-<name>`` part against ``data_schemas[name]``.

    ``checkpoint_interval``, when set, also saves the partial reply itself (marked ``streaming``) that often
    (seconds); by default only the chunk log keeps it, which costs far less (one write per flush for all streams
    instead of rewriting every reply);
    ``store_retry_for`` how long the final store of a reply is retried while the database is unavailable (the
    reply's stream waits for it before its ``[DONE]``);
    ``shutdown_grace`` how long the replies still being generated may go on once the service begins to stop
    (:meth:`begin_shutdown`, else :meth:`close`) before they are interrupted;
    ``max_concurrent_streams`` how many replies one user may have generating at once (0: any number), counted
    across every process sharing the database: a turn over it is refused (:class:`TooManyStreams`) by the
    transaction that would store its prompt, so nothing of it is stored;
    ``auto_title`` whether an untitled thread is titled after its first reply (:class:`AutoTitler`): by default as
    the app's settings say (``CHATKEEP_AUTO_TITLE``, on) once mounted (:meth:`configure_titles`), off otherwise.
    """

    def __init__(
        self,
        store: ChatStore,
        model: Model,
        *,
        tools: ToolRegistry | None = None,
        max_steps: int = 8,
        system_prompt: str | None = None,
        features: StreamFeatures | None = None,
        metadata_schema: type[BaseModel] | None = None,
        data_schemas: Mapping[str, type[BaseModel]] | None = None,
        hub: StreamHub | None = None,
        checkpoint_interval: float | None = None,
        model_timeout: float = 300.0,
        max_concurrent_streams: int = 0,
        store_retry_for: float = 30.0,
        shutdown_grace: float = 0.0,
        auto_title: bool | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.tools = tools or ToolRegistry()
        self.max_steps = max_steps
        self.system_prompt = system_prompt
        self.features = features or StreamFeatures()
        self.metadata_schema = metadata_schema
        self.data_schemas = data_schemas
        gated = [t.name for t in self.tools.as_mapping().values() if t.needs_approval]
        if gated and not self.features.tool_approval:
            raise ValueError(
                f"tools {gated} need approval, which needs ai 6.0.0 or newer in every client: "
                "set CHATKEEP_AI_SDK_VERSION=6.0.0 (or StreamFeatures(tool_approval=True))"
            )
        self._client_tools = frozenset(t.name for t in self.tools.as_mapping().values() if t.execute is None)
        self.hub = hub or StreamHub(StreamLog(store.engine))
        self.approvals = ToolApprovals(store.engine)
        self.checkpoint_interval = checkpoint_interval
        self.model_timeout = model_timeout
        self.max_concurrent_streams = max_concurrent_streams
        self.store_retry_for = store_retry_for
        self.shutdown_grace = shutdown_grace
        self.auto_title = auto_title
        self.titler = AutoTitler(store)
        self._tasks: set[asyncio.Task[None]] = set()
        #: interrupts the replies still running, once the service began to stop
        self._stop_timer: asyncio.TimerHandle | None = None

    def configure_titles(self, *, auto_title: bool, max_chars: int) -> None:
        """What the app's settings say of titles (``include_chatkeep`` calls it): whether threads are titled
        automatically, unless this service was made saying so itself, and how long a title may be."""
        if self.auto_title is None:
            self.auto_title = auto_title
        self.titler.max_length = min(MAX_TITLE_LENGTH, max_chars)

    async def startup(self) -> None:
        """For a long-running service: close replies a dead process left unfinished, and keep watching."""
        await self.hub.start()

    def begin_shutdown(self) -> None:
        """The service is about to stop: the replies still being generated ``shutdown_grace`` seconds from now are
        interrupted then (their partial text stored ``interrupted``, their streams ended with ``abort``), so their
        clients get a proper end while the server still waits for their connections (``chatkeep serve`` calls it
        when the server begins to stop). Later calls change nothing."""
        self._shutdown_timer()

    def _shutdown_timer(self) -> asyncio.TimerHandle:
        if self._stop_timer is None:
            loop = asyncio.get_running_loop()
            self._stop_timer = loop.call_at(loop.time() + self.shutdown_grace, self.hub.interrupt_all)
        return self._stop_timer

    async def close(self) -> None:
        """Let the replies being generated finish until ``shutdown_grace`` seconds after :meth:`begin_shutdown`
        (called now if it was not), interrupt the rest (their partial text is stored ``interrupted``), and stop
        background work."""
        timer = self._shutdown_timer()
        loop = asyncio.get_running_loop()
        while self._tasks and (left := timer.when() - loop.time()) > 0:
            await asyncio.wait(list(self._tasks), timeout=left)  # never cancels them, unlike wait_for
        timer.cancel()
        await self.hub.close()
        await self.wait_idle(titles=False)
        await self.titler.close()

    async def follow(self, user_id: str, thread_id: str) -> AsyncIterator[bytes] | None:
        """The reply streaming in the user's thread, replayed from its start and followed live; ``None`` (HTTP
        204) when nothing streams, including in a thread that does not exist or is someone else's."""
        return await self.hub.follow(user_id, thread_id)

    async def title(
        self,
        user_id: str,
        thread_id: str,
        *,
        force: bool = False,
        fallback_messages: Sequence[Mapping[str, Any]] = (),
        max_length: int = MAX_TITLE_LENGTH,
    ) -> str | None:
        """``POST /api/threads/{id}/title``: :func:`generate_title`, after the title being made in the background
        for this thread, if any, is stored: a client that asks as soon as the first reply ends (assistant-ui's
        ``generateTitle``, the chat page) gets that title instead of having a second one made."""
        if not force:
            await self.titler.wait(user_id, thread_id)
        return await generate_title(
            self.store, self.model, user_id, thread_id, force=force, fallback_messages=fallback_messages,
            max_length=max_length, model_timeout=self.model_timeout,
        )  # fmt: skip

    def reply_stored(self, user_id: str, thread_id: str) -> None:
        """A reply was stored in the thread (by a turn, or by a client through the history API): title the thread
        in the background if that was its first reply and it has none (with ``auto_title`` on)."""
        if self.auto_title:
            self.titler.after_reply(user_id, thread_id, self.model, model_timeout=self.model_timeout)

    async def stop(self, user_id: str, thread_id: str) -> None:
        """Stop the reply streaming in the user's thread (a no-op when there is none) and wait until its partial
        text is stored, marked ``aborted``."""
        await self.hub.stop(user_id, thread_id)

    async def start(
        self,
        user_id: str,
        thread_id: str,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        message: Mapping[str, Any] | None = None,
        trigger: str | None = None,
    ) -> Turn:
        """Validate what the client sent that the thread does not hold as sent (as a UIMessage, then against the
        schemas), plan the turn and store the prompt (raising before anything streams if the request is refused),
        then start generating in the background."""
        if (
            self.store.inserts_in_one_round_trip
            and messages is not None
            and len(messages) == 1
            and message is None
            and trigger != "regenerate-message"
        ):
            turn = await self._start_with_one_new_message(user_id, thread_id, messages[0], trigger)
            if turn is not None:
                return turn
        try:
            tree = await self.store.load_tree(user_id, thread_id)
        except ThreadNotFound:
            tree = MessageTree((), None)
        # What the server stored is trusted: a message sent exactly as stored was validated when it was stored.
        # Everything else the client sent is validated as a UIMessage, then against the schemas.
        stored = {m.id: m.content for m in tree.messages if is_ai_sdk_format(m.format)}
        sent: list[tuple[tuple[str | int, ...], Mapping[str, Any]]] = [
            (("body", "messages", i), m) for i, m in enumerate(messages or ())
        ]
        if message is not None:
            sent.append((("body", "message"), message))
        issues: list[ValidationIssue] = []
        for loc, item in sent:
            if stored.get(str(item.get("id"))) != content_of(item):
                parse_ui_message(item, loc=loc)
                issues.extend(self._check_message(item, loc))
        if issues:
            raise InvalidInput(issues)
        plan = plan_turn(tree, messages=messages, message=message, trigger=trigger, client_tools=self._client_tools)
        if plan.continued is not None:
            last = ("body", "message") if message is not None else ("body", "messages", len(messages or ()) - 1)
            plan = await check_approvals(self.approvals, user_id, thread_id, plan, last)
        # Only now that the request is known to be acceptable is anything written. (Another user's thread id
        # raises ThreadNotFound here, as if it did not exist.)
        # All of it in one transaction: a failure halfway leaves nothing behind.
        writes = [
            MessageWrite(
                new_message["id"],
                parent,
                content_of(new_message),
                edit=plan.kind == "edit" and index == len(plan.new_user_messages) - 1,
            )  # fmt: skip
            for index, (new_message, parent) in enumerate(plan.new_user_messages)
        ]
        if plan.continued is not None:
            content = content_of(plan.continued)
            writes.append(MessageWrite(plan.continued["id"], plan.reply_parent, content))
        message_id = plan.continued["id"] if plan.continued is not None else generate_id("msg")
        live, stream_row = self._prepare_stream(thread_id, message_id, plan)
        await self.store.write_messages(user_id, thread_id, writes, stream=stream_row)
        return self._launch(user_id, thread_id, plan, live)

    async def _start_with_one_new_message(
        self, user_id: str, thread_id: str, item: Mapping[str, Any], trigger: str | None
    ) -> Turn | None:
        """:meth:`start` without reading the thread, for the first message of a new chat (``messages`` is one
        user message the thread does not hold): such a message becomes a root of the thread's tree and the whole
        history, whatever else the thread holds, so the turn needs no read; the prompt is stored in one round
        trip, which also creates the thread (:meth:`ChatStore.insert_new_message`). ``None``, having written
        nothing, whenever that is not the case (the message is stored already, or refused as sent: it may be
        stored exactly so; the thread is another user's; another store than PostgreSQL): :meth:`start` then
        decides as always, from the thread."""
        loc = ("body", "messages", 0)
        try:
            parse_ui_message(item, loc=loc)
        except InvalidInput:
            return None
        if item.get("role") != "user" or self._check_message(item, loc):
            return None
        plan = plan_turn(
            MessageTree((), None), messages=[item], message=None, trigger=trigger, client_tools=self._client_tools
        )
        if plan.kind != "submit" or len(plan.new_user_messages) != 1:
            return None
        new_message, parent = plan.new_user_messages[0]
        write = MessageWrite(new_message["id"], parent, content_of(new_message))
        live, stream_row = self._prepare_stream(thread_id, generate_id("msg"), plan)
        if not await self.store.insert_new_message(user_id, thread_id, write, stream=stream_row):
            return None
        return self._launch(user_id, thread_id, plan, live)

    def _prepare_stream(self, thread_id: str, message_id: str, plan: TurnPlan) -> tuple[LiveStream, NewStream]:
        """The reply's live stream and its row, which the store admits (or refuses with :class:`TooManyStreams`)
        in the very transaction that stores the prompt: the limit holds against any burst, in every process."""
        return self.hub.prepare(
            thread_id=thread_id,
            message_id=message_id,
            parent_id=plan.reply_parent,
            max_active=self.max_concurrent_streams,
        )

    def _launch(self, user_id: str, thread_id: str, plan: TurnPlan, live: LiveStream) -> Turn:
        """Publish ``live`` (its row and the prompt are stored) and start generating its reply."""
        self.hub.adopt(live)
        task = asyncio.create_task(self._run(user_id, thread_id, live.message_id, plan, live))
        live.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Turn(thread_id, live.message_id, live)

    def _check_message(self, message: Mapping[str, Any], loc: tuple[str | int, ...]) -> list[ValidationIssue]:
        issues: list[ValidationIssue] = []
        if self.metadata_schema is not None and message.get("metadata") is not None:
            issues.extend(_schema_issues(self.metadata_schema, message["metadata"], (*loc, "metadata")))
        for index, part in enumerate(message.get("parts", ())):
            where = (*loc, "parts", index)
            kind: str = part["type"]
            if kind.startswith("data-") and self.data_schemas is not None:
                schema = self.data_schemas.get(kind.removeprefix("data-"))
                if schema is None:
                    issues.append(ValidationIssue(where, f"no data schema for the data part {kind!r}", "unknown_data"))
                else:
                    issues.extend(_schema_issues(schema, part["data"], (*where, "data")))
            name = tool_name(part)
            if name is None or kind == "dynamic-tool":
                continue
            tool = self.tools.get(name)
            if tool is None:
                if part["state"] not in ("output-available", "output-error", "output-denied"):
                    issues.append(ValidationIssue(where, f"no tool named {name!r} is registered", "unknown_tool"))
            elif part["state"] != "input-streaming" and "input" in part:
                issues.extend(_schema_issues(tool.input_model, part["input"], (*where, "input")))
        return issues

    async def wait_idle(self, *, titles: bool = True) -> None:
        """Wait until every running generation has finished (and been stored), and with ``titles`` every title
        being made too."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if titles:
            await self.titler.wait_all()


def _schema_issues(schema: type[BaseModel], value: Any, loc: tuple[str | int, ...]) -> list[ValidationIssue]:
    try:
        schema.model_validate(value)
    except ValidationError as exc:
        return [ValidationIssue((*loc, *err["loc"]), err["msg"], err["type"]) for err in exc.errors()]
    return []
