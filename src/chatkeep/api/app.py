"""``create_app``: the chatkeep service; ``include_chatkeep``: its routers inside your own FastAPI app."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware

from chatkeep.api.auth import Authenticator
from chatkeep.api.deps import ChatkeepState, StoreDep
from chatkeep.api.errors import install_error_handlers
from chatkeep.api.limits import LocalWindow, RateLimiter, RedisWindow
from chatkeep.api.page import NoSniff, mount_web
from chatkeep.api.routes import chat as chat_routes
from chatkeep.api.routes import history, threads
from chatkeep.chat.models import resolve_model
from chatkeep.chat.service import ChatService
from chatkeep.chat.streams import LocalBroker, RedisBroker, StreamHub
from chatkeep.errors import ChatkeepError
from chatkeep.protocol.stream import StreamFeatures
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.store.migrate import upgrade
from chatkeep.store.streams import StreamLog
from chatkeep.tools import ToolRegistry, builtin_tools

__all__ = ["create_app", "create_router", "include_chatkeep"]

log = logging.getLogger("chatkeep")

#: Allocations between two collections of the youngest generation, once the service has started (see ``lifespan``).
_YOUNG_GC_THRESHOLD = 50_000


def create_router(*, prefix: str = "/api") -> APIRouter:
    """All chatkeep routes under ``prefix``: ``/threads…``, ``/threads/{id}/messages…``, ``/chat…``."""
    router = APIRouter(prefix=prefix)
    router.include_router(threads.router)
    router.include_router(history.router)
    router.include_router(chat_routes.router)
    return router


def include_chatkeep(
    app: FastAPI,
    store: ChatStore,
    *,
    settings: Settings | None = None,
    chat: ChatService | None = None,
    prefix: str = "/api",
) -> None:
    """Mount chatkeep into an existing app.

    Adds the routes under ``prefix`` and chatkeep's error handlers, and keeps ``store`` on ``app.state``. The
    caller owns the lifecycles: the store's (``await upgrade(store.engine)`` at start, ``await store.close()``
    at the end) and the chat service's (``await chat.startup()``, which closes replies a dead process left
    unfinished, and ``await chat.close()``, which interrupts those still running).

    ``chat`` answers ``POST /api/chat``: by default the model named in ``settings.model`` with the built-in
    tools; pass a :class:`ChatService` with your own model and tools. Plug in your own authentication with
    ``app.dependency_overrides[chatkeep.api.get_current_user] = your_dependency`` (it returns the user id).
    """
    settings = settings or Settings()
    if chat is None:
        broker = RedisBroker(settings.redis_url) if settings.redis_url else LocalBroker()
        chat = ChatService(
            store,
            resolve_model(settings.model, settings),
            tools=ToolRegistry(builtin_tools()),
            max_steps=settings.max_steps,
            system_prompt=settings.system_prompt,
            features=StreamFeatures.for_clients(settings.ai_sdk_version),
            hub=StreamHub(StreamLog(store.engine), broker=broker),
            model_timeout=settings.model_timeout_s,
            max_concurrent_streams=settings.max_concurrent_streams,
        )
    limiter: RateLimiter | None = None
    if settings.requests_per_minute:
        limiter = (
            RedisWindow(settings.redis_url, settings.requests_per_minute)
            if settings.redis_url
            else LocalWindow(settings.requests_per_minute)
        )
    app.state.chatkeep = ChatkeepState(
        store=store, settings=settings, authenticator=Authenticator(settings), chat=chat, limiter=limiter
    )
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
    app.include_router(create_router(prefix=prefix))
    install_error_handlers(app)


def create_app(
    settings: Settings | None = None, *, store: ChatStore | None = None, chat: ChatService | None = None
) -> FastAPI:
    """The chatkeep service. Without ``store``, one is made from ``settings.database_url`` when the app starts
    (and migrated, unless ``settings.migrate_on_start`` is off) and closed when it stops."""
    settings = settings or Settings()
    owned = store is None
    the_store = store or ChatStore.from_url(settings.database_url, pool_size=settings.db_pool_size)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await upgrade(the_store.engine)
        with contextlib.suppress(ChatkeepError):
            if await the_store.bypasses_row_security():
                log.warning(
                    "connected to PostgreSQL as a superuser or a role with BYPASSRLS: row-level security does not "
                    "apply, so only chatkeep's own query filters keep users apart; connect as an ordinary role"
                )
        service: ChatService = app.state.chatkeep.chat
        await service.startup()
        # What start-up built (modules, the app, the models' schemas) lives as long as the process: keep it out of
        # the garbage collector's full collections, which otherwise rescan those 100,000+ objects every few
        # hundred requests (milliseconds each, on the request that triggers one).
        gc.freeze()
        # And collect the young generation every 50,000 allocations instead of CPython's 700: a request builds its
        # objects (rows, parts, chunks) and drops them itself, so each young collection mostly rescans live objects
        # and promotes them to be rescanned again. Loading a 10,000-message thread spent a third of its time there
        # (59 ms of GC); now half as much. Older generations keep CPython's thresholds.
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(_YOUNG_GC_THRESHOLD, older, oldest)
        try:
            yield
        finally:
            await service.close()
            if owned:
                await the_store.close()

    app = FastAPI(
        title="chatkeep",
        summary="Keeps AI chat threads and messages; speaks the Vercel AI SDK and assistant-ui wire formats.",
        version=_version(),
        lifespan=lifespan,
    )
    include_chatkeep(app, the_store, settings=settings, chat=chat)

    @app.get("/healthz", tags=["service"], summary="Liveness and database reachability")
    async def healthz(store: StoreDep) -> Response:
        await store.ping()
        return Response(b'{"status":"ok"}', media_type="application/json")

    mount_web(app, settings)
    app.add_middleware(NoSniff)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chatkeep")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"
