"""``create_app``: the chatkeep service; ``include_chatkeep``: its routers inside your own FastAPI app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Lifespan

from chatkeep.api.auth import Authenticator
from chatkeep.api.deps import ChatkeepState, StoreDep
from chatkeep.api.docs import mount_docs
from chatkeep.api.errors import install_error_handlers
from chatkeep.api.guard import EdgeGuard
from chatkeep.api.limits import LocalWindow, RateLimiter, RedisWindow
from chatkeep.api.page import NoSniff, mount_web
from chatkeep.api.routes import chat as chat_routes
from chatkeep.api.routes import history, threads
from chatkeep.chat.brokers import LocalBroker, RedisBroker
from chatkeep.chat.models import resolve_model, resolve_tools
from chatkeep.chat.redis_link import RedisLink
from chatkeep.chat.service import ChatService
from chatkeep.chat.streams import StreamHub
from chatkeep.errors import ChatkeepError
from chatkeep.protocol.stream import StreamFeatures
from chatkeep.providers.base import prompt_suggestions
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.store.migrate import upgrade
from chatkeep.store.streams import StreamLog

__all__ = ["create_app", "create_router", "include_chatkeep"]

log = logging.getLogger("chatkeep")


def create_router(*, prefix: str = "/api", lifespan: Lifespan[Any] | None = None) -> APIRouter:
    """All chatkeep routes under ``prefix``: ``/threads…``, ``/threads/{id}/messages…``, ``/chat…``; with
    ``lifespan``, which an app that includes the router runs within its own (FastAPI nests included routers'
    lifespans)."""
    router = APIRouter(prefix=prefix, lifespan=lifespan)
    router.include_router(threads.router)
    router.include_router(history.router)
    router.include_router(chat_routes.router)
    return router


def include_chatkeep(
    app: FastAPI,
    store: ChatStore | None = None,
    *,
    settings: Settings | None = None,
    chat: ChatService | None = None,
    prefix: str = "/api",
) -> None:
    """Mount chatkeep into an existing app: its routes under ``prefix``, its state on ``app.state.chatkeep``, and
    its start and stop inside the app's lifespan. Nothing else of the app or its process changes: chatkeep's routes
    answer their errors themselves, in chatkeep's format; the app's own routes, and paths that match no route (under
    ``prefix`` too, where the app may have routes of its own), keep the app's handlers and format; no middleware is
    added and the garbage collector is left alone.

    Lifecycle, run by the app with no call of yours: chatkeep's router carries a lifespan, which FastAPI runs
    *within* the app's own (after its start-up, before its shutdown), whether the app has a ``lifespan=`` or
    ``on_event`` handlers. On start: the schema is brought up to date (unless ``settings.migrate_on_start`` is off)
    and the chat service starts (:meth:`ChatService.startup`: replies a dead process left unfinished are stored
    ``interrupted``, and dead streams keep being watched for). On stop: the replies still being generated may
    finish for the chat service's ``shutdown_grace`` (``settings.shutdown_grace_s`` for the default one) and the
    rest are stored ``interrupted`` (:meth:`ChatService.close`), then the Redis link is closed, and the store if
    chatkeep made it. So a store you pass and close in your own lifespan is still open while chatkeep stops. The
    lifespan the app has when this is called is the one that runs: give the app its own at construction
    (``FastAPI(lifespan=…)``), not by replacing ``app.router.lifespan_context`` afterwards, and include chatkeep
    with this function, not by mounting a ``create_app()`` app (a mounted app's lifespan never runs).

    ``store``: yours (you close it), or ``None`` for one made from ``settings.database_url`` and closed by
    chatkeep. ``chat`` answers ``POST /api/chat``: by default the model named in ``settings.model`` with the tools
    of ``settings.tools`` (the demo model also has its own); pass a :class:`ChatService` with your own model and
    tools. Plug in your own authentication with
    ``app.dependency_overrides[chatkeep.api.get_current_user] = your_dependency`` (it returns the user id).
    Redis (``settings.redis_url``) is optional at any time: while it is unavailable chatkeep runs as without it,
    and ``app.state.chatkeep.degraded`` says so.
    """
    settings = settings or Settings()
    owned = store is None
    store = store or ChatStore.from_url(settings.database_url, pool_size=settings.db_pool_size)
    redis: RedisLink | None = None
    # one link for whatever uses Redis here: the default chat service's broker, the request limiter and the count
    # of failed authentications
    if settings.redis_url and (chat is None or settings.requests_per_minute or settings.auth_failures_per_minute):
        redis = RedisLink(
            settings.redis_url, timeout=settings.redis_timeout_s, connect_timeout=settings.redis_connect_timeout_s
        )
    if chat is None:
        broker = RedisBroker(redis) if redis is not None else LocalBroker()
        tools = resolve_tools(settings)  # first: a bad tool path then leaves no model client open
        chat = ChatService(
            store,
            resolve_model(settings.model, settings),
            tools=tools,
            max_steps=settings.max_steps,
            system_prompt=settings.system_prompt,
            features=StreamFeatures.for_clients(settings.ai_sdk_version),
            hub=StreamHub(StreamLog(store.engine), broker=broker),
            model_timeout=settings.model_timeout_s,
            max_concurrent_streams=settings.max_concurrent_streams,
            shutdown_grace=settings.shutdown_grace_s,
        )
    chat.configure_titles(auto_title=settings.auto_title, max_chars=settings.max_title_chars)
    limiter: RateLimiter | None = None
    if settings.requests_per_minute:
        limiter = (
            RedisWindow(redis, settings.requests_per_minute)
            if redis is not None
            else LocalWindow(settings.requests_per_minute)
        )
    state = ChatkeepState(
        store=store,
        settings=settings,
        authenticator=Authenticator(settings, redis=redis),
        chat=chat,
        limiter=limiter,
        redis=redis,
    )
    app.state.chatkeep = state

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await upgrade(state.store.engine)
        with contextlib.suppress(ChatkeepError):
            if await state.store.bypasses_row_security():
                log.warning(
                    "connected to PostgreSQL as a superuser or a role with BYPASSRLS: row-level security does not "
                    "apply, so only chatkeep's own query filters keep users apart; connect as an ordinary role"
                )
        await state.chat.startup()
        try:
            yield
        finally:
            await state.chat.close()
            if state.redis is not None:
                await state.redis.close()
            if owned:
                await state.store.close()

    app.include_router(create_router(prefix=prefix, lifespan=lifespan))


def create_app(
    settings: Settings | None = None, *, store: ChatStore | None = None, chat: ChatService | None = None
) -> FastAPI:
    """The chatkeep service: an app that is all chatkeep's (its error format on every path, the edge guard, health
    checks, the chat page and the API docs). Without ``store``, one is made from ``settings.database_url`` and
    closed when the app stops; with ``settings.migrate_on_start``, the schema is brought up to date when it
    starts (see :func:`include_chatkeep`). It changes nothing outside the app: ``chatkeep serve`` tunes the
    process's garbage collector itself (:func:`chatkeep.api.server.served_app`)."""
    settings = settings or Settings()
    app = FastAPI(
        title="chatkeep",
        summary="Keeps AI chat threads and messages; speaks the Vercel AI SDK and assistant-ui wire formats.",
        version=_version(),
        docs_url=None,  # served from the package by mount_docs, not from a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    include_chatkeep(app, store, settings=settings, chat=chat)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", settings.api_key_user_header],
            expose_headers=["x-next-cursor", "link"],
            max_age=600,
        )
    # Outermost: which hosts and pages are answered at all (chatkeep.api.guard says why). Without authentication,
    # always; with it, the host check once CHATKEEP_ALLOWED_HOSTS is set.
    open_to_all = not app.state.chatkeep.authenticator.enabled
    if open_to_all or settings.allowed_hosts:
        app.add_middleware(
            EdgeGuard,
            allowed_hosts=settings.allowed_hosts,
            trusted_origins=settings.cors_origins if open_to_all else None,
        )

    @app.get("/healthz", tags=["service"], summary="Liveness and database reachability")
    async def healthz(store: StoreDep) -> Response:
        await store.ping()
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", tags=["service"], summary="Readiness: the database, and whether a configured Redis answers")
    async def readyz(store: StoreDep) -> Response:
        """503 when the database is unreachable; otherwise ``ok``, or ``degraded`` while a configured Redis is
        unavailable (every request is still served, as without Redis)."""
        await store.ping()
        if app.state.chatkeep.degraded:
            return Response(b'{"status":"degraded","redis":"unavailable"}', media_type="application/json")
        return Response(b'{"status":"ok"}', media_type="application/json")

    mount_docs(app)
    chatkeep: ChatkeepState = app.state.chatkeep
    mount_web(app, settings, suggestions=prompt_suggestions(chatkeep.chat.model))
    app.add_middleware(NoSniff)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chatkeep")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"
