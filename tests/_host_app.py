"""Someone's own FastAPI app with chatkeep mounted, for tests that run it in a process of its own (to kill it):
``uvicorn --factory tests._host_app:create``. The app has routes, errors and a lifespan of its own, and mounts
chatkeep the way the README shows, with nothing more: ``include_chatkeep`` and its own authentication. The
database is ``$CHATKEEP_DATABASE_URL``; the model is the demo (``$CHATKEEP_DEMO_DELAY_MS``).

:func:`host_routes` are the host's own routes, also used bare (without chatkeep) to know what FastAPI answers.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, HTTPException

from chatkeep import ChatStore, get_current_user, include_chatkeep
from chatkeep.settings import Settings
from chatkeep.store.migrate import upgrade


def host_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "fine"}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "my teapot")

    @app.get("/items/{number}")
    async def item(number: int) -> dict[str, int]:
        return {"number": number}

    @app.get("/api/own")
    async def own() -> dict[str, str]:
        """A route of the host's under chatkeep's prefix."""
        return {"mine": "yes"}


def create() -> FastAPI:
    store = ChatStore.from_url(Settings().database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upgrade(store.engine)
        app.state.x = "started"
        yield
        await store.close()

    app = FastAPI(lifespan=lifespan)
    host_routes(app)

    @app.get("/state")
    async def state() -> dict[str, object]:
        return {"x": getattr(app.state, "x", None), "gc": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}

    include_chatkeep(app, store, prefix="/api")

    async def session_user(x_user: str | None = Header(default=None)) -> str:
        if not x_user:
            raise HTTPException(401, "sign in first")
        return x_user

    app.dependency_overrides[get_current_user] = session_user
    return app
