"""The built-in chat page at ``/`` and ``/chat/{id}`` with its assets, and the response headers that confine it.

The page shows text that a model wrote, and a model can be steered by what it reads. So the browser is told to run
only the page's own scripts and styles, to send requests only to this server, to load images from elsewhere only
as ``CHATKEEP_WEB_REMOTE_IMAGES`` allows (the page itself waits for a click by default), to send no referrer, and
never to show the page inside another site's frame. Every response (the API's JSON too) says
``X-Content-Type-Options: nosniff``, so a browser never runs or styles one as a type it was not sent as.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Literal

from fastapi import FastAPI, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatkeep.providers.base import PromptSuggestion
from chatkeep.settings import Settings
from chatkeep.web import DIST

__all__ = ["NoSniff", "content_security_policy", "mount_web"]


def content_security_policy(remote_images: Literal["click", "always", "never"]) -> str:
    """The page's policy. The built ``index.html`` has no inline script or style (React sets styles through the
    DOM, which CSP allows), so ``'self'`` is enough for both. Images from other sites are allowed in the policy
    unless the setting is ``never``: loading one on a click needs it, and the page decides when."""
    images = "'self' data: blob:" + ("" if remote_images == "never" else " http: https:")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def mount_web(app: FastAPI, settings: Settings, *, suggestions: Sequence[PromptSuggestion] = ()) -> None:
    """The chat page at ``/`` (a new chat) and ``/chat/{id}`` (a stored one), with its assets, when the app is
    built (it is in every release); otherwise ``/`` points at the API docs. ``suggestions``: the prompts an empty
    chat offers (the model's, see :func:`chatkeep.providers.base.prompt_suggestions`)."""
    index = DIST / "index.html"
    if not index.is_file():

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

        return
    # The page reads its settings from <meta> tags: no request before the first render, no inline script.
    meta = f'<meta name="chatkeep-remote-images" content="{settings.web_remote_images}" />'
    if suggestions:
        offered = json.dumps([{"label": s.label, "prompt": s.prompt} for s in suggestions], ensure_ascii=False)
        meta += f'<meta name="chatkeep-suggestions" content="{html.escape(offered, quote=True)}" />'
    page = index.read_bytes().replace(b"</head>", meta.encode() + b"</head>", 1)
    headers = {
        # The HTML names the hashed assets, so it must never be cached; the assets themselves never change.
        "cache-control": "no-cache",
        "content-security-policy": content_security_policy(settings.web_remote_images),
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",  # frame-ancestors, for browsers that predate it
    }

    @app.get("/", include_in_schema=False)
    async def new_chat() -> Response:
        return Response(page, media_type="text/html", headers=headers)

    @app.get("/chat/{thread_id}", include_in_schema=False)
    async def stored_chat(thread_id: str) -> Response:
        return Response(page, media_type="text/html", headers=headers)

    if (DIST / "assets").is_dir():
        app.mount("/assets", _ImmutableFiles(directory=DIST / "assets"), name="assets")


class _ImmutableFiles(StaticFiles):
    """Static files whose names carry a hash of their content: cached by browsers for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


class NoSniff:
    """ASGI middleware: ``X-Content-Type-Options: nosniff`` on every HTTP response that does not set it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("x-content-type-options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_nosniff)
