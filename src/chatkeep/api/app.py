"""``create_app``: the chatkeep service; ``include_chatkeep``: its routers inside your own FastAPI app."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from chatkeep.api.auth import Authenticator
from chatkeep.api.deps import ChatkeepState, StoreDep
from chatkeep.api.errors import install_error_handlers
from chatkeep.api.guard import EdgeGuard
from chatkeep.api.limits import LocalWindow, RateLimiter, RedisWindow
from chatkeep.api.routes import chat as chat_routes
from chatkeep.api.routes import history, threads
from chatkeep.chat.brokers import LocalBroker, RedisBroker
from chatkeep.chat.models import resolve_model
from chatkeep.chat.redis_link import RedisLink
from chatkeep.chat.service import ChatService
from chatkeep.chat.streams import StreamHub
from chatkeep.errors import ChatkeepError
from chatkeep.protocol.stream import StreamFeatures
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.store.migrate import upgrade
from chatkeep.store.streams import StreamLog
from chatkeep.tools import ToolRegistry, builtin_tools
from chatkeep.web import DIST

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
    at the end), the chat service's (``await chat.startup()``, which closes replies a dead process left
    unfinished, and ``await chat.close()``, which lets those still running finish for up to its
    ``shutdown_grace`` (``settings.shutdown_grace_s`` for the default one) and interrupts the rest) and, with
    ``settings.redis_url``, Redis's (``await app.state.chatkeep.redis.close()`` after the chat service's). Redis is
    optional at any time: while it is unavailable chatkeep runs as without it, and ``app.state.chatkeep.degraded``
    says so.

    ``chat`` answers ``POST /api/chat``: by default the model named in ``settings.model`` with the built-in
    tools; pass a :class:`ChatService` with your own model and tools. Plug in your own authentication with
    ``app.dependency_overrides[chatkeep.api.get_current_user] = your_dependency`` (it returns the user id).
    """
    settings = settings or Settings()
    redis: RedisLink | None = None
    # one link for whatever uses Redis here: the default chat service's broker, the request limiter and the count
    # of failed authentications
    if settings.redis_url and (chat is None or settings.requests_per_minute or settings.auth_failures_per_minute):
        redis = RedisLink(
            settings.redis_url, timeout=settings.redis_timeout_s, connect_timeout=settings.redis_connect_timeout_s
        )
    if chat is None:
        broker = RedisBroker(redis) if redis is not None else LocalBroker()
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
    app.state.chatkeep = ChatkeepState(
        store=store,
        settings=settings,
        authenticator=Authenticator(settings, redis=redis),
        chat=chat,
        limiter=limiter,
        redis=redis,
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
        state: ChatkeepState = app.state.chatkeep
        service = state.chat
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
            if state.redis is not None:
                await state.redis.close()
            if owned:
                await the_store.close()

    app = FastAPI(
        title="chatkeep",
        summary="Keeps AI chat threads and messages; speaks the Vercel AI SDK and assistant-ui wire formats.",
        version=_version(),
        lifespan=lifespan,
    )
    include_chatkeep(app, the_store, settings=settings, chat=chat)
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

    _mount_web(app)
    return app


def _mount_web(app: FastAPI) -> None:
    """The chat page at ``/`` (a new chat) and ``/chat/{id}`` (a stored one), with its assets, when the app is
    built (it is in every release); otherwise ``/`` points at the API docs."""
    index = DIST / "index.html"
    if not index.is_file():

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

        return
    page = index.read_bytes()
    # The HTML names the hashed assets, so it must never be cached; the assets themselves never change.
    no_cache = {"cache-control": "no-cache"}

    @app.get("/", include_in_schema=False)
    async def new_chat() -> Response:
        return Response(page, media_type="text/html", headers=no_cache)

    @app.get("/chat/{thread_id}", include_in_schema=False)
    async def stored_chat(thread_id: str) -> Response:
        return Response(page, media_type="text/html", headers=no_cache)

    if (DIST / "assets").is_dir():
        app.mount("/assets", _ImmutableFiles(directory=DIST / "assets"), name="assets")


class _ImmutableFiles(StaticFiles):
    """Static files whose names carry a hash of their content: cached by browsers for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chatkeep")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"
