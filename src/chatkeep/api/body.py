"""Request bodies: read once, bounded in size, parsed as strict JSON whatever the content type says.

FastAPI's own body parsing uses ``json.loads``, which accepts ``NaN``, crashes on deeply nested input, and only
parses bodies labelled ``application/json``; the seed's assistant-ui adapters send JSON labelled
``text/plain`` (a ``fetch`` with a string body and no headers). :class:`ChatkeepRoute` fixes all of that for
chatkeep's routes only, so mounting the routers changes nothing for the host app's own routes:

* a body over the limit is a 413 before it is read to the end;
* ``application/json``, ``*/*+json``, ``text/plain`` or no content type are parsed as JSON; any other
  content type with a body is a 415;
* with chatkeep's own authentication, a request without valid credentials is a 401 before its body is read;
* every error is answered in chatkeep's format (:func:`chatkeep.api.errors.error_to_response`), by the route
  itself, so a host app's own exception handlers and error format stay as they were for its own routes;
* JSON is parsed by :func:`chatkeep.protocol.strict_json.parse_json` (as ``chatkeep import`` parses its lines):
  no ``NaN``/``Infinity`` (nor a number beyond a double, like ``1e400``), no lone surrogates, nesting bounded (a
  clear 400 rather than a crash); a string with a NUL character is a 422, since no database can store it.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from chatkeep.api.auth import get_current_user
from chatkeep.api.errors import error_to_response
from chatkeep.api.schemas import ErrorBody
from chatkeep.errors import InvalidInput
from chatkeep.protocol.messages import find_forbidden_characters
from chatkeep.protocol.strict_json import parse_json

__all__ = ["BodyTooLarge", "ChatkeepRoute", "InvalidJSON", "UnsupportedMediaType"]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the limit of {limit} bytes.")


class UnsupportedMediaType(HTTPException):
    def __init__(self, content_type: str) -> None:
        super().__init__(415, f"Send JSON (application/json), not {content_type!r}.")


class InvalidJSON(HTTPException):
    def __init__(self, reason: str) -> None:
        super().__init__(400, f"The request body is not valid JSON: {reason}.")


def _is_json_like(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    main, sub = message.get_content_maintype(), message.get_content_subtype()
    return (main == "application" and (sub == "json" or sub.endswith("+json"))) or (main, sub) == ("text", "plain")


_NUL_ESCAPE = b"\\u0000"


class _ChatkeepRequest(Request):
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                value = parse_json(raw)
            except ValueError as exc:
                raise InvalidJSON(str(exc)) from None
            # A NUL can only reach a parsed string through the escape ``\u0000`` (the parser refuses raw control
            # characters and lone surrogates), so a body without that text is not walked at all.
            if _NUL_ESCAPE in raw and (issues := find_forbidden_characters(value, ("body",))):
                raise InvalidInput(issues)
            self._json = value
        return self._json


#: What :class:`ChatkeepRoute` answers before the endpoint runs, documented on every route it may happen on.
_BODY_ERRORS: dict[int | str, str] = {
    400: "The body is not valid JSON.",
    413: "The body, or a message in it, is larger than a limit.",
    415: "The body is not JSON (application/json, text/plain or no content type).",
}
_RATE_LIMITED = "Too many requests (or replies generating) for this user: retry after Retry-After seconds."


class ChatkeepRoute(APIRoute):
    """The route class of every chatkeep router (see the module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # Documented in the OpenAPI schema: the JSON error bodies this class gives to any request with a body,
        # and the per-user limits every route counts against.
        responses: dict[int | str, dict[str, Any]] = dict(kwargs.pop("responses", None) or {})
        documented = dict(_BODY_ERRORS) if {"POST", "PUT", "PATCH"} & set(kwargs.get("methods") or ()) else {}
        documented[429] = _RATE_LIMITED
        for status, description in documented.items():
            responses.setdefault(status, {"model": ErrorBody, "description": description})
        super().__init__(path, endpoint, responses=responses, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def chatkeep_handler(request: Request) -> Response:
            try:
                return await _handle(request)
            except Exception as exc:
                return await error_to_response(request, exc)

        async def _handle(request: Request) -> Response:
            strict = _ChatkeepRequest(request.scope, request.receive)
            state = getattr(request.app.state, "chatkeep", None)
            if state is not None:
                strict.max_body_bytes = state.settings.max_body_bytes
                if get_current_user not in request.app.dependency_overrides:
                    # Who is asking comes first: an anonymous caller learns nothing about how its body would be
                    # judged, and costs no parsing. (A host app's own auth dependency runs where FastAPI runs
                    # dependencies, after the body is read.)
                    await get_current_user(request)
            if request.method in ("POST", "PUT", "PATCH"):
                body = await strict.body()
                content_type = request.headers.get("content-type")
                if body and content_type is not None and not _is_json_like(content_type):
                    raise UnsupportedMediaType(content_type)
                if body:
                    # FastAPI parses only bodies labelled JSON; the body was checked above, so say so.
                    headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                    headers.append((b"content-type", b"application/json"))
                    strict.scope["headers"] = headers
                    strict.__dict__.pop("_headers", None)  # drop Starlette's cached copy
                    await strict.json()
            return await handler(strict)

        return chatkeep_handler

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A method this path does not take is refused by Starlette before the route's handler runs, as an
        # exception for the app's handlers: answer it here, like every other error of chatkeep's routes.
        if self.methods and scope["method"] not in self.methods:
            refused = StarletteHTTPException(405, headers={"Allow": ", ".join(sorted(self.methods))})
            response = await error_to_response(Request(scope, receive), refused)
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)
