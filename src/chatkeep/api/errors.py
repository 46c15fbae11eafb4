"""Every error becomes ``{"error": {"code", "message", "details"?}}`` with the right status, here and only here.

Where: on chatkeep's own routes always (:class:`chatkeep.api.body.ChatkeepRoute` answers every exception its
request raises with :func:`error_to_response`), and on the whole app only where the app is chatkeep's
(``create_app`` calls :func:`install_error_handlers`). A host app that mounts chatkeep with ``include_chatkeep``
keeps its own error handlers and format for its own routes and for paths that match no route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from chatkeep.api.responses import json_response
from chatkeep.errors import (
    ChatkeepError,
    Conflict,
    DatabaseMisconfigured,
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    ValidationIssue,
)

__all__ = ["error_response", "error_to_response", "install_error_handlers"]

log = logging.getLogger("chatkeep.api")

_STATUS: list[tuple[type[ChatkeepError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (Unauthorized, 401),
    (DatabaseUnavailable, 503),
    (DatabaseMisconfigured, 500),  # no retry will help: an operator has to fix it (the log says what)
    (TooManyRequests, 429),
    (PayloadTooLarge, 413),
]
_HTTP_CODES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response({"error": error}, status, headers=headers)


def _details(issues: tuple[ValidationIssue, ...]) -> list[dict[str, str]]:
    return [{"loc": issue.location(), "message": issue.message, "type": issue.type} for issue in issues]


async def _chatkeep_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatkeepError)
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, DatabaseUnavailable):
        headers["Retry-After"] = "1"
        log.warning("%s", exc)  # the operator's account (which database, why), never a password
    elif isinstance(exc, DatabaseMisconfigured):
        log.error("%s", exc)
    details = _details(exc.issues) if isinstance(exc, InvalidInput) else None
    return error_response(status, exc.code, exc.message, details=details, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(400, "invalid_json", "The request body is not valid JSON.")
    issues = tuple(
        ValidationIssue(tuple(err["loc"]), str(err["msg"]), str(err.get("type", "invalid"))) for err in errors
    )
    return await _chatkeep_error(_request, InvalidInput(issues))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "There is no such route."
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    """The client went away before its request was read in full: nothing was done, and the answer reaches no one
    (without this handler, every such request was logged as an error with its traceback)."""
    return error_response(400, "client_disconnected", "The request was not received in full; nothing was changed.")


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side; nothing was changed.")


_Handler = Callable[[Request, Exception], Awaitable[Response]]

#: The expected errors and their handlers; anything else is :func:`_unexpected`.
_HANDLERS: tuple[tuple[type[Exception], _Handler], ...] = (
    (ChatkeepError, _chatkeep_error),
    (RequestValidationError, _validation_error),
    (StarletteHTTPException, _http_error),
    (ClientDisconnect, _client_gone),
)


async def error_to_response(request: Request, exc: Exception) -> Response:
    """chatkeep's answer to ``exc``, raised while handling ``request``."""
    for cls, handler in _HANDLERS:
        if isinstance(exc, cls):
            return await handler(request, exc)
    return await _unexpected(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in chatkeep's format, unmatched paths included: for an app that is all
    chatkeep's (``create_app``); never done to a host app."""
    for cls, handler in _HANDLERS:
        app.add_exception_handler(cls, handler)
    app.add_exception_handler(Exception, _unexpected)
