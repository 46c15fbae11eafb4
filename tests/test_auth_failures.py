"""Authentication that cannot be guessed at leisure (issue #12, point 12): an HS256 token without ``exp`` is
refused unless ``CHATKEEP_JWT_REQUIRE_EXP=false``, and failed authentications that guessing produces (a wrong
signature or key, a malformed token; not a genuine token that expired) are counted per client address: over
``CHATKEEP_AUTH_FAILURES_PER_MINUTE``, that address gets a 429 with ``Retry-After`` for every request that
needs authentication, valid credentials included, until the minute ends; other addresses are not affected. The
count is kept in this process, or in Redis (shared by every process) when one is configured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from chatkeep.api import create_app
from chatkeep.api.auth import new_api_key
from chatkeep.protocol.ids import generate_id
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import JWT_SECRET, count_rows

REDIS_URL = "redis://127.0.0.1:6379/0"


def _bearer(claims: dict[str, Any], secret: str = JWT_SECRET) -> dict[str, str]:
    return {"authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


VALID = {"sub": "alice", "exp": int(time.time()) + 3600}
WRONG = _bearer(VALID, secret="a-guessed-secret-that-is-long-enough-for-hs256")


@asynccontextmanager
async def _from(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def _fresh_window() -> None:
    """Failures are counted in fixed one-minute windows: start a test's count well before the window ends, so it
    cannot be cut in two (waits at most five seconds)."""
    left = 60 - time.time() % 60
    if left < 5:
        await asyncio.sleep(left + 0.1)


def _address() -> str:
    """A client address of its own for each run: counts in the shared Redis outlive a test by up to two minutes."""
    return f"client-{generate_id()}"


class TestExp:
    @pytest.mark.parametrize(
        ("require", "status"), [(None, 401), ("true", 401), ("false", 200)], ids=["default", "on", "off"]
    )
    async def test_a_token_without_exp(
        self, store: ChatStore, monkeypatch: pytest.MonkeyPatch, require: str | None, status: int
    ) -> None:
        if require is not None:
            monkeypatch.setenv("CHATKEEP_JWT_REQUIRE_EXP", require)
        app = create_app(Settings(migrate_on_start=False, jwt_secret=JWT_SECRET), store=store)
        async with _from(app, "127.0.0.1") as client:
            response = await client.get("/api/threads", headers=_bearer({"sub": "alice"}))
            assert response.status_code == status, response.text
            if status == 401:
                assert "'exp'" in response.json()["error"]["message"]
            assert (await client.get("/api/threads", headers=_bearer(VALID))).status_code == 200


class TestFailedAuthentication:
    async def test_an_address_over_the_limit_is_refused_until_the_minute_ends(self, store: ChatStore) -> None:
        key, digest = new_api_key()
        settings = Settings(
            migrate_on_start=False, jwt_secret=JWT_SECRET, api_keys=[digest], auth_failures_per_minute=3
        )
        app = create_app(settings, store=store)
        await _fresh_window()
        async with _from(app, "192.0.2.1") as attacker, _from(app, "192.0.2.2") as bystander:
            expired = _bearer({"sub": "alice", "exp": int(time.time()) - 3600})
            for headers in [{}, {"authorization": "Basic YWxpY2U6c2VjcmV0"}, expired, _bearer({"sub": "alice"})] * 2:
                # no credentials, or genuine ones that are refused (expired, no exp): no guess, not counted
                assert (await attacker.get("/api/threads", headers=headers)).status_code == 401
            guesses = [
                WRONG,
                {"authorization": f"Bearer {key}x", "x-chatkeep-user": "alice"},
                {"authorization": "Bearer not-a-jwt"},
            ]
            for headers in guesses:
                assert (await attacker.get("/api/threads", headers=headers)).status_code == 401
            refused = await attacker.post("/api/threads", json={"title": "x"}, headers=WRONG)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 61
            again = await attacker.post("/api/threads", json={"title": "right"}, headers=_bearer(VALID))
            assert again.status_code == 429  # the right credentials too: a guess that succeeds must not show
            assert (
                await bystander.post("/api/threads", json={"title": "mine"}, headers=_bearer(VALID))
            ).status_code == 201
        assert (await count_rows(store))["threads"] == 1

    async def test_the_count_is_shared_by_every_process_through_redis(self, store: ChatStore) -> None:
        settings = Settings(
            migrate_on_start=False, jwt_secret=JWT_SECRET, auth_failures_per_minute=2, redis_url=REDIS_URL
        )
        one, two = create_app(settings, store=store), create_app(settings, store=store)
        address = _address()
        await _fresh_window()
        try:
            async with _from(one, address) as a, _from(two, address) as b:
                # each process sees two failures of this address, and the two processes four together
                statuses = [(await (a, b)[i % 2].get("/api/threads", headers=WRONG)).status_code for i in range(4)]
                assert statuses == [401, 401, 429, 429]
                for client in (a, b):
                    assert (await client.get("/api/threads", headers=_bearer(VALID))).status_code == 429
        finally:
            for app in (one, two):
                await app.state.chatkeep.redis.close()

    async def test_no_limit_when_set_to_zero(self, store: ChatStore) -> None:
        settings = Settings(migrate_on_start=False, jwt_secret=JWT_SECRET, auth_failures_per_minute=0)
        async with _from(create_app(settings, store=store), "192.0.2.3") as client:
            for _ in range(40):
                assert (await client.get("/api/threads", headers=WRONG)).status_code == 401
            assert (await client.get("/api/threads", headers=_bearer(VALID))).status_code == 200
