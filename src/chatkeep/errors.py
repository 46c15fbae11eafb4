"""The errors chatkeep raises, modelled once and free of any transport.

Every error a caller can act on derives from :class:`ChatkeepError`. Each class carries a stable machine
``code`` and a human ``message``; the HTTP layer (``chatkeep.api.errors``) maps classes to status codes in one
place and the CLI turns them into messages. Nothing below the API layer knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ChatkeepError",
    "Conflict",
    "DatabaseError",
    "DatabaseMisconfigured",
    "DatabaseUnavailable",
    "InvalidConfiguration",
    "InvalidInput",
    "InvalidMessage",
    "MessageNotFound",
    "NotFound",
    "ParentNotFound",
    "PayloadTooLarge",
    "SchemaMissing",
    "ThreadNotFound",
    "TooManyRequests",
    "TooManyStreams",
    "Unauthorized",
    "ValidationIssue",
]


class ChatkeepError(Exception):
    """Base of every error chatkeep raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ChatkeepError):
    """Something does not exist *for this caller*.

    Another user's thread is reported exactly like a missing one, so the error never says which it was.
    """

    code = "not_found"


class ThreadNotFound(NotFound):
    code = "thread_not_found"

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"Thread {thread_id!r} was not found.")
        self.thread_id = thread_id


class MessageNotFound(NotFound):
    code = "message_not_found"

    def __init__(self, thread_id: str, message_id: str) -> None:
        super().__init__(f"Message {message_id!r} was not found in thread {thread_id!r}.")
        self.thread_id = thread_id
        self.message_id = message_id


class Conflict(ChatkeepError):
    """The request is well formed but contradicts what is stored."""

    code = "conflict"


class ParentNotFound(Conflict):
    code = "parent_not_found"

    def __init__(self, thread_id: str, message_id: str, parent_id: str) -> None:
        super().__init__(
            f"Message {message_id!r} names parent {parent_id!r}, "
            f"which is not an earlier message of thread {thread_id!r}."
        )
        self.parent_id = parent_id


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One problem in the input: where (a path of keys and indexes) and what."""

    loc: tuple[str | int, ...]
    message: str
    type: str = "invalid"

    def location(self) -> str:
        """The path as a readable string, e.g. ``content.parts[2].toolCallId``."""
        out = ""
        for item in self.loc:
            if isinstance(item, int):
                out += f"[{item}]"
            else:
                out += f".{item}" if out else item
        return out


class InvalidInput(ChatkeepError):
    """Input that cannot be accepted; ``issues`` say exactly where and why."""

    code = "validation_error"

    def __init__(self, issues: Sequence[ValidationIssue], *, message: str | None = None) -> None:
        self.issues = tuple(issues)
        if message is None:
            first = self.issues[0]
            where = first.location()
            message = f"{where}: {first.message}" if where else first.message
            if len(self.issues) > 1:
                message += f" (and {len(self.issues) - 1} more)"
        super().__init__(message)


class InvalidMessage(InvalidInput):
    """A message that is not a valid UIMessage for its format."""

    code = "invalid_message"


class InvalidConfiguration(ChatkeepError):
    """Settings that cannot work together, or that name something that is not there (tools that do not import,
    an authentication mode without its credentials): found while the service is being built, before it serves."""

    code = "invalid_configuration"


class Unauthorized(ChatkeepError):
    """No valid credentials were presented."""

    code = "unauthorized"

    def __init__(self, message: str = "Authentication required.") -> None:
        super().__init__(message)


class PayloadTooLarge(ChatkeepError):
    """A request over one of the size limits (messages, parts, text, attachments)."""

    code = "payload_too_large"

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        where = ValidationIssue(tuple(loc), message).location()
        super().__init__(f"{where}: {message}" if where else message)


class TooManyRequests(ChatkeepError):
    """A limit was reached; the request may be repeated after ``retry_after`` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooManyStreams(TooManyRequests):
    """The user already has ``limit`` replies generating, as many as they may: a new turn may start once one ends."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} replies are already being generated for you; wait for one to end.", retry_after=5)
        self.limit = limit


class DatabaseError(ChatkeepError):
    """The configured database cannot be used.

    ``message`` is for clients and names nothing of the deployment. ``detail`` is for the operator (the CLI prints
    it, the server logs it): which database (host and port, or file; the URL only with its password masked), why,
    and what to do. Neither ever holds a password.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message

    def __str__(self) -> str:  # what logs and tracebacks show: the operator's account
        return self.detail


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached right now (refused, lost or timed-out connections, a server starting or
    shutting down); the request may be retried, and chatkeep reconnects by itself once it answers."""

    code = "database_unavailable"

    def __init__(
        self, message: str = "The database is unavailable; try again shortly.", detail: str | None = None
    ) -> None:
        super().__init__(message, detail)


class DatabaseMisconfigured(DatabaseError):
    """chatkeep cannot use the database it is configured with, and waiting will not change that: the database or
    the role does not exist, the password is wrong, the SQLite file's folder is missing, the URL is not valid….
    Retrying does not help: ``chatkeep serve`` refuses to start with it, and a request that meets it is a server
    error, not a "try again" (an operator has to fix ``DATABASE_URL`` or the database).
    """

    code = "database_misconfigured"

    def __init__(
        self,
        detail: str,
        message: str = "The service cannot use its database; its operator has to fix its configuration.",
    ) -> None:
        super().__init__(message, detail)


class SchemaMissing(DatabaseUnavailable):
    """The database has no chatkeep schema (or an older one): an operator has to run the migrations."""

    code = "schema_missing"

    def __init__(self) -> None:
        super().__init__("The database has no chatkeep schema yet: run 'chatkeep db upgrade'.")
