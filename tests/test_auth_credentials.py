"""Which credentials a deployment needs: every kind configured (JWTs, API keys) is accepted; while any is configured,
a request without a valid one is a 401 (``auto`` never falls back to the one local user); API keys alone are a
complete configuration, for a service only a backend calls, beyond loopback too; and ``CHATKEEP_AUTH`` refuses a
configuration that contradicts it, in one clear line.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from chatkeep.api import create_app
from chatkeep.api.auth import new_api_key
from chatkeep.cli import main
from chatkeep.errors import ChatkeepError
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import running_server
from tests.conftest import JWT_SECRET, count_rows

KEY, DIGEST = new_api_key()
#: never fetched: no request here carries a token a JWKS would verify
JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"


def as_user(user_id: str) -> dict[str, str]:
    """What a backend sends with its API key, acting for one of its users."""
    return {"authorization": f"Bearer {KEY}", "x-chatkeep-user": user_id}


def with_jwt(user_id: str) -> dict[str, str]:
    token = jwt.encode({"sub": user_id, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        yield client


async def titles(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get("/api/threads", headers=headers)
    assert response.status_code == 200, response.text
    return [thread["title"] for thread in response.json()]


CREDENTIALS: dict[str, dict[str, Any]] = {
    "api-keys": {"api_keys": [DIGEST]},
    "jwt-secret": {"jwt_secret": JWT_SECRET},
    "jwks-url": {"jwks_url": JWKS_URL},
    "jwt-secret+api-keys": {"jwt_secret": JWT_SECRET, "api_keys": [DIGEST]},
    "jwks-url+api-keys": {"jwks_url": JWKS_URL, "api_keys": [DIGEST]},
}


@pytest.mark.parametrize("credentials", CREDENTIALS.values(), ids=CREDENTIALS)
async def test_auto_never_acts_as_the_local_user_while_a_credential_is_configured(
    store: ChatStore, credentials: dict[str, Any]
) -> None:
    app = create_app(Settings(migrate_on_start=False, **credentials), store=store)
    async with client_of(app) as client:
        for headers in [
            {},
            {"x-chatkeep-user": "local"},
            {"authorization": "Basic bG9jYWw6bG9jYWw="},
            {"authorization": "Bearer not-a-credential"},
        ]:
            assert (await client.get("/api/threads", headers=headers)).status_code == 401, headers
            assert (await client.post("/api/threads", json={"title": "x"}, headers=headers)).status_code == 401
    assert (await count_rows(store))["threads"] == 0


@pytest.mark.parametrize("mode", ["auto", "api-keys"])
async def test_api_keys_alone_are_a_configuration(store: ChatStore, mode: str) -> None:
    app = create_app(Settings(migrate_on_start=False, auth=mode, api_keys=[DIGEST]), store=store)
    async with client_of(app) as client:
        # A backend's request: its own Host name, and, relayed from its page, another site's origin. Both are
        # checked only without authentication (chatkeep.api.guard); with API keys there is authentication.
        backend = {"host": "chatkeep.internal", "origin": "https://shop.example", "sec-fetch-site": "cross-site"}
        created = await client.post("/api/threads", json={"title": "alice's"}, headers={**as_user("alice"), **backend})
        assert created.status_code == 201, created.text
        assert await titles(client, as_user("alice")) == ["alice's"]
        assert await titles(client, as_user("bob")) == []

        nobody = await client.get("/api/threads")
        assert nobody.status_code == 401
        no_user = await client.get("/api/threads", headers={"authorization": f"Bearer {KEY}"})
        assert no_user.status_code == 401 and "x-chatkeep-user" in no_user.json()["error"]["message"]
        a_jwt = await client.get("/api/threads", headers=with_jwt("alice"))
        assert a_jwt.status_code == 401 and "Only API keys" in a_jwt.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["auto", "jwt", "api-keys"])
async def test_jwts_and_api_keys_together_are_both_accepted(store: ChatStore, mode: str) -> None:
    settings = Settings(migrate_on_start=False, auth=mode, jwt_secret=JWT_SECRET, api_keys=[DIGEST])
    async with client_of(create_app(settings, store=store)) as client:
        by_token = await client.post("/api/threads", json={"title": "from the page"}, headers=with_jwt("alice"))
        assert by_token.status_code == 201, by_token.text
        by_key = await client.post("/api/threads", json={"title": "from the backend"}, headers=as_user("alice"))
        assert by_key.status_code == 201, by_key.text
        assert sorted(await titles(client, with_jwt("alice"))) == ["from the backend", "from the page"]
        assert await titles(client, as_user("bob")) == []
        assert (await client.get("/api/threads")).status_code == 401


def test_api_keys_alone_serve_beyond_loopback(tmp_path: Path) -> None:
    env = {"CHATKEEP_API_KEYS": DIGEST}
    database_url = f"sqlite:///{tmp_path / 'chatkeep.db'}"
    with (
        running_server(database_url, env=env, args=["--host", "0.0.0.0"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.get("/api/threads").status_code == 401
        assert client.post("/api/threads", json={"title": "x"}).status_code == 401
        created = client.post("/api/threads", json={"title": "alice's"}, headers=as_user("alice"))
        assert created.status_code == 201, created.text
        listed = client.get("/api/threads", headers=as_user("alice")).json()
        assert [thread["title"] for thread in listed] == ["alice's"]
        assert client.get("/api/threads", headers=as_user("bob")).json() == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHATKEEP_AUTH": "api-keys"}, "CHATKEEP_AUTH=api-keys needs CHATKEEP_API_KEYS"),
        ({"CHATKEEP_AUTH": "api-keys", "CHATKEEP_JWT_SECRET": JWT_SECRET}, "CHATKEEP_AUTH=api-keys needs"),
        ({"CHATKEEP_AUTH": "jwt", "CHATKEEP_API_KEYS": DIGEST}, "CHATKEEP_AUTH=jwt needs CHATKEEP_JWT_SECRET"),
    ],
    ids=["api-keys-without-any", "api-keys-with-a-jwt-secret", "jwt-with-api-keys"],
)
def test_a_mode_without_its_credentials_is_one_clear_line(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--database-url", f"sqlite:///{tmp_path / 'c.db'}"], env=env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: {message}")


@pytest.mark.parametrize("credentials", CREDENTIALS.values(), ids=CREDENTIALS)
def test_none_with_credentials_configured_is_refused(credentials: dict[str, Any]) -> None:
    """A credential that no request would need is a mistake, not a setting: the service does not start."""
    settings = Settings(database_url="sqlite:///:memory:", auth="none", **credentials)
    with pytest.raises(
        ChatkeepError, match=r"^CHATKEEP_AUTH=none, but credentials are configured \(CHATKEEP_"
    ) as raised:
        create_app(settings)
    assert raised.value.code == "invalid_configuration"
