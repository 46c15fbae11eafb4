"""Authentication modes: JWTs verified against a JWKS URL (RS256, ES256; cached, fetched again for an unknown key
id), issuer/audience/claim checks, server-to-server API keys acting for a user, refusing to serve everyone's chats
without authentication beyond loopback, and CORS for browser apps on another origin.

The JWKS is served by a real local HTTP server; nothing here reaches the internet.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from chatkeep.api import create_app
from chatkeep.api.auth import hash_api_key, new_api_key
from chatkeep.cli import main
from chatkeep.settings import Settings
from chatkeep.store import ChatStore


class JWKS:
    """A local JWKS endpoint whose key set a test can change, counting how often it is fetched."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture(scope="module")
def jwks() -> Iterator[JWKS]:
    server = JWKS()
    yield server
    server.close()


def rsa_key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "alg": "RS256", "use": "sig"}


def ec_key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "alg": "ES256", "use": "sig"}


def token(private: Any, kid: str, alg: str, **claims: Any) -> str:
    body = {"sub": "alice", "iss": "https://auth.example", "aud": "chatkeep", "exp": int(time.time()) + 600}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def jwks_client(store: ChatStore, jwks: JWKS) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        migrate_on_start=False,
        jwks_url=jwks.url,
        jwt_issuer="https://auth.example",
        jwt_audience="chatkeep",
        jwt_user_claim="sub",
        jwks_refresh_s=0,
    )
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


class TestJwks:
    async def test_rs256_and_es256_tokens_from_the_key_set(self, jwks_client: httpx.AsyncClient, jwks: JWKS) -> None:
        rsa_private, rsa_public = rsa_key("rsa-1")
        ec_private, ec_public = ec_key("ec-1")
        jwks.keys = [rsa_public, ec_public]
        alice = token(rsa_private, "rsa-1", "RS256")
        created = await jwks_client.post("/api/threads", json={"title": "mine"}, headers=bearer(alice))
        assert created.status_code == 201, created.text
        bob = token(ec_private, "ec-1", "ES256", sub="bob")
        assert (await jwks_client.get("/api/threads", headers=bearer(bob))).json() == []
        titles = [t["title"] for t in (await jwks_client.get("/api/threads", headers=bearer(alice))).json()]
        assert titles == ["mine"]

    async def test_an_unknown_key_id_fetches_the_key_set_again(
        self, jwks_client: httpx.AsyncClient, jwks: JWKS
    ) -> None:
        old_private, old_public = rsa_key("old")
        jwks.keys = [old_public]
        assert (
            await jwks_client.get("/api/threads", headers=bearer(token(old_private, "old", "RS256")))
        ).status_code == 200
        fetched = jwks.fetches
        assert (
            await jwks_client.get("/api/threads", headers=bearer(token(old_private, "old", "RS256")))
        ).status_code == 200
        assert jwks.fetches == fetched  # cached
        new_private, new_public = rsa_key("rotated")
        jwks.keys = [old_public, new_public]  # the identity provider rotates its keys
        response = await jwks_client.get("/api/threads", headers=bearer(token(new_private, "rotated", "RS256")))
        assert response.status_code == 200
        assert jwks.fetches == fetched + 1

    @pytest.mark.parametrize(
        ("claims", "message"),
        [
            ({"iss": "https://evil.example"}, "issued by someone else"),
            ({"aud": "another-app"}, "another audience"),
            ({"exp": int(time.time()) - 3600}, "expired"),
            ({"exp": None}, "no 'exp' claim"),
            ({"sub": None}, "no usable 'sub' claim"),
        ],
        ids=["issuer", "audience", "expired", "no-exp", "no-sub"],
    )
    async def test_claims_are_checked(
        self, jwks_client: httpx.AsyncClient, jwks: JWKS, claims: dict[str, Any], message: str
    ) -> None:
        private, public = rsa_key("k")
        jwks.keys = [public]
        response = await jwks_client.get("/api/threads", headers=bearer(token(private, "k", "RS256", **claims)))
        assert response.status_code == 401
        assert message in response.json()["error"]["message"]

    async def test_a_key_not_in_the_set_is_refused(self, jwks_client: httpx.AsyncClient, jwks: JWKS) -> None:
        _, public = rsa_key("k")
        forger, _ = rsa_key("k")  # same kid, another key
        jwks.keys = [public]
        assert (await jwks_client.get("/api/threads", headers=bearer(token(forger, "k", "RS256")))).status_code == 401

    async def test_an_hs256_token_is_refused_without_a_secret(self, jwks_client: httpx.AsyncClient) -> None:
        guess = "a-guessed-secret-long-enough-for-hs256-to-be-quiet"
        forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, guess, algorithm="HS256")
        response = await jwks_client.get("/api/threads", headers=bearer(forged))
        assert response.status_code == 401


class TestApiKeys:
    @pytest.fixture
    async def keyed(self, store: ChatStore) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
        key, digest = new_api_key()
        settings = Settings(migrate_on_start=False, jwt_secret="s3cret-for-hs256-tokens-in-tests", api_keys=[digest])
        app = create_app(settings, store=store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, key

    async def test_a_key_acts_for_the_named_user(self, keyed: tuple[httpx.AsyncClient, str]) -> None:
        client, key = keyed
        as_alice = {**bearer(key), "x-chatkeep-user": "alice"}
        assert (await client.post("/api/threads", json={"title": "for alice"}, headers=as_alice)).status_code == 201
        as_bob = {**bearer(key), "x-chatkeep-user": "bob"}
        assert (await client.get("/api/threads", headers=as_bob)).json() == []
        assert [t["title"] for t in (await client.get("/api/threads", headers=as_alice)).json()] == ["for alice"]
        alice_jwt = jwt.encode(
            {"sub": "alice", "exp": int(time.time()) + 60}, "s3cret-for-hs256-tokens-in-tests", algorithm="HS256"
        )
        assert [t["title"] for t in (await client.get("/api/threads", headers=bearer(alice_jwt))).json()] == [
            "for alice"
        ]

    async def test_a_wrong_key_or_no_user_is_a_401(self, keyed: tuple[httpx.AsyncClient, str]) -> None:
        client, key = keyed
        wrong = await client.get("/api/threads", headers={**bearer(key + "x"), "x-chatkeep-user": "alice"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        nobody = await client.get("/api/threads", headers=bearer(key))
        assert nobody.status_code == 401 and "x-chatkeep-user" in nobody.json()["error"]["message"]

    def test_only_the_hash_is_configured(self) -> None:
        key, digest = new_api_key()
        assert key.startswith("ck_") and digest == hash_api_key(key) and key not in digest
        result = CliRunner().invoke(main, ["keys", "new"])
        assert result.exit_code == 0 and "sha256:" in result.output


class TestServeRefusesToExposeChats:
    def test_no_auth_beyond_loopback_is_refused(self) -> None:
        result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--database-url", "sqlite:///:memory:"])
        assert result.exit_code == 1
        assert "refusing to serve" in result.output


async def test_cors_for_a_browser_app_on_another_origin(store: ChatStore) -> None:
    settings = Settings(migrate_on_start=False, cors_origins="https://app.example, https://admin.example")
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        preflight = await client.options(
            "/api/chat",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        listed = await client.get("/api/threads", headers={"origin": "https://admin.example"})
        assert listed.headers["access-control-allow-origin"] == "https://admin.example"
        assert "x-next-cursor" in listed.headers["access-control-expose-headers"].lower()
        other = await client.get("/api/threads", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
