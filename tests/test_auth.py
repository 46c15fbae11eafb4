"""JWT mode: every request needs ``Authorization: Bearer <HS256 JWT>``, and the token's ``sub`` is the user.

Pins down that a missing header, another scheme, a malformed, forged, expired, ``alg: none`` or subject-less
token is a 401 with ``WWW-Authenticate: Bearer`` and the JSON error body, on every route, before anything is
read or written; and that a valid token works and scopes all data to its ``sub``.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import jwt
import pytest

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import JWT_SECRET, ClientFactory, count_rows


def _token(claims: dict[str, Any], *, secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _hs512(claims: dict[str, Any]) -> str:
    """Signed with the right secret but another algorithm (which also warns that the key is short for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return _token(claims, algorithm="HS512")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token, written by hand (no signature at all)."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _in(seconds: int) -> int:
    return int(time.time()) + seconds


GOOD_CLAIMS = {"sub": "alice", "exp": _in(3600)}


def _tampered() -> str:
    """Alice's valid token with the payload swapped for Mallory's, keeping Alice's signature."""
    header, _, signature = _token(GOOD_CLAIMS).split(".")
    return f"{header}.{_b64({'sub': 'mallory', 'exp': _in(3600)})}.{signature}"


# name → the Authorization header to send (None: no header at all)
BAD_CREDENTIALS: dict[str, str | None] = {
    "no-header": None,
    "empty-header": "",
    "basic-scheme": "Basic YWxpY2U6c2VjcmV0",
    "token-scheme-with-a-valid-jwt": f"Token {_token(GOOD_CLAIMS)}",
    "bare-jwt-without-scheme": _token(GOOD_CLAIMS),
    "bearer-without-token": "Bearer",
    "bearer-with-blank-token": "Bearer    ",
    "garbage-token": "Bearer not-a-jwt",
    "three-garbage-segments": "Bearer aaa.bbb.ccc",
    "other-secret": f"Bearer {_token(GOOD_CLAIMS, secret='another-secret-that-is-long-enough-for-hs256')}",
    "tampered-payload": f"Bearer {_tampered()}",
    "expired": f"Bearer {_token({'sub': 'alice', 'exp': _in(-3600)})}",
    "not-yet-valid": f"Bearer {_token({'sub': 'alice', 'exp': _in(7200), 'nbf': _in(3600)})}",
    "without-sub": f"Bearer {_token({'exp': _in(3600)})}",
    "empty-sub": f"Bearer {_token({'sub': '', 'exp': _in(3600)})}",
    "numeric-sub": f"Bearer {_token({'sub': 42, 'exp': _in(3600)})}",
    "alg-none": f"Bearer {_unsigned(GOOD_CLAIMS)}",
    "alg-none-via-pyjwt": f"Bearer {jwt.encode(GOOD_CLAIMS, '', algorithm='none')}",
    "hs512-with-the-right-secret": f"Bearer {_hs512(GOOD_CLAIMS)}",
}

_MESSAGE = {"format": "ai-sdk/v6", "content": {"role": "user", "parts": [{"type": "text", "text": "Hi"}]}}
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/threads", None),
    ("POST", "/api/threads", {"title": "t"}),
    ("POST", "/api/threads", None),
    ("GET", "/api/threads/T1", None),
    ("PATCH", "/api/threads/T1", {"title": "t"}),
    ("DELETE", "/api/threads/T1", None),
    ("GET", "/api/threads/T1/messages", None),
    ("POST", "/api/threads/T1/messages", {"id": "m", "parent_id": None, **_MESSAGE}),
    ("GET", "/api/threads/T1/messages/m", None),
    ("PUT", "/api/threads/T1/messages/m", _MESSAGE),
    ("PATCH", "/api/threads/T1/messages/m", _MESSAGE),
    ("DELETE", "/api/threads/T1/messages/m", None),
    ("GET", "/api/chat/T1/messages", None),
]


@pytest.fixture
async def anonymous(store: ChatStore) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that requires JWTs, sending no credentials of its own."""
    app = create_app(Settings(jwt_secret=JWT_SECRET, migrate_on_start=False), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatkeep.test") as client:
        yield client


def _assert_401(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = cast(dict[str, Any], body["error"])
    assert error["code"] == "unauthorized"
    assert isinstance(error["message"], str) and error["message"]
    return error


async def _send(
    client: httpx.AsyncClient, method: str, path: str, body: Any, authorization: str | None
) -> httpx.Response:
    headers = {} if authorization is None else {"authorization": authorization}
    if body is None:
        return await client.request(method, path, headers=headers)
    return await client.request(method, path, json=body, headers=headers)


class TestRefused:
    @pytest.mark.parametrize("authorization", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
    async def test_401_with_www_authenticate(
        self, anonymous: httpx.AsyncClient, store: ChatStore, authorization: str | None
    ) -> None:
        for method, path, body in ROUTES:
            _assert_401(await _send(anonymous, method, path, body, authorization))
        assert await count_rows(store) == {"threads": 0, "messages": 0, "parts": 0}

    async def test_an_expired_token_says_so(self, anonymous: httpx.AsyncClient) -> None:
        error = _assert_401(await _send(anonymous, "GET", "/api/threads", None, BAD_CREDENTIALS["expired"]))
        assert "expired" in error["message"].lower()

    async def test_a_refused_caller_learns_nothing_about_existing_threads(
        self, anonymous: httpx.AsyncClient, make_client: ClientFactory, store: ChatStore
    ) -> None:
        alice = await make_client("alice")
        thread = (await alice.post("/api/threads", json={"title": "private"})).json()["id"]
        row = {"id": "m", "parent_id": None, **_MESSAGE}
        assert (await alice.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
        counts = await count_rows(store)
        forged = BAD_CREDENTIALS["alg-none"]
        for method, path, body in ROUTES:
            real = await _send(anonymous, method, path.replace("T1", thread), body, forged)
            made_up = await _send(anonymous, method, path, body, forged)
            assert real.text == made_up.text
            _assert_401(real)
        assert await count_rows(store) == counts
        assert (await alice.get(f"/api/threads/{thread}")).json()["title"] == "private"

    async def test_authentication_comes_before_body_validation(
        self, anonymous: httpx.AsyncClient, store: ChatStore
    ) -> None:
        """An anonymous caller is told to authenticate, not how its request body is wrong."""
        thread_bodies: list[dict[str, Any]] = [{"bogus": 1}, {"title": 5}, {"localId": ""}]
        for body in thread_bodies:
            _assert_401(await anonymous.post("/api/threads", json=body))
        message_bodies: list[dict[str, Any]] = [
            {"id": 5},
            {"id": "m", "format": "ai-sdk/v6", "content": {"role": "nobody"}},
        ]
        for body in message_bodies:
            _assert_401(await anonymous.post("/api/threads/T1/messages", json=body))
        assert await count_rows(store) == {"threads": 0, "messages": 0, "parts": 0}

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"{", "application/json"),
            (b'{"title": NaN}', "application/json"),
            (b'{"title": "a\\u0000b"}', "application/json"),
        ],
        ids=["malformed-json", "nan", "nul-character"],
    )
    async def test_authentication_comes_before_parsing_the_body(
        self, anonymous: httpx.AsyncClient, store: ChatStore, body: bytes, content_type: str
    ) -> None:
        """The body of an unauthenticated request is not parsed: the answer is 401 whatever it holds."""
        for authorization in (None, BAD_CREDENTIALS["garbage-token"]):
            headers = {"content-type": content_type}
            if authorization is not None:
                headers["authorization"] = authorization
            _assert_401(await anonymous.post("/api/threads", content=body, headers=headers))
        assert await count_rows(store) == {"threads": 0, "messages": 0, "parts": 0}


class TestAccepted:
    async def test_a_valid_token_works(self, anonymous: httpx.AsyncClient, store: ChatStore) -> None:
        auth = {"authorization": f"Bearer {_token({'sub': 'alice', 'exp': _in(3600)})}"}
        created = await anonymous.post("/api/threads", json={"title": "mine"}, headers=auth)
        assert created.status_code == 201, created.text
        listed = await anonymous.get("/api/threads", headers=auth)
        assert listed.status_code == 200
        assert [t["id"] for t in listed.json()] == [created.json()["id"]]
        assert [t.id for t in await store.list_threads("alice")] == [created.json()["id"]]

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
    async def test_the_scheme_is_case_insensitive(self, anonymous: httpx.AsyncClient, scheme: str) -> None:
        auth = {"authorization": f"{scheme} {_token({'sub': 'alice', 'exp': _in(3600)})}"}
        assert (await anonymous.get("/api/threads", headers=auth)).status_code == 200

    async def test_extra_claims_are_fine(self, anonymous: httpx.AsyncClient) -> None:
        claims = {"sub": "alice", "exp": _in(3600), "iat": _in(-5), "role": "admin", "scope": "chat"}
        response = await anonymous.get("/api/threads", headers={"authorization": f"Bearer {_token(claims)}"})
        assert response.status_code == 200, response.text

    async def test_data_is_scoped_to_the_sub(self, make_client: ClientFactory, store: ChatStore) -> None:
        alice, bob = await make_client("alice"), await make_client("bob")
        from_alice = (await alice.post("/api/threads", json={"title": "alice's"})).json()["id"]
        from_bob = (await bob.post("/api/threads", json={"title": "bob's"})).json()["id"]
        row = {"id": "m", "parent_id": None, **_MESSAGE}
        assert (await alice.post("/api/threads/from-first-message/messages", json=row)).status_code == 204

        assert {t["id"] for t in (await alice.get("/api/threads")).json()} == {from_alice, "from-first-message"}
        assert [t["id"] for t in (await bob.get("/api/threads")).json()] == [from_bob]
        assert {t.id for t in await store.list_threads("alice")} == {from_alice, "from-first-message"}
        assert [t.id for t in await store.list_threads("bob")] == [from_bob]
        assert (await bob.get(f"/api/threads/{from_alice}")).status_code == 404
        assert (await bob.get("/api/threads/from-first-message/messages")).status_code == 404

    async def test_a_new_token_for_the_same_sub_sees_the_same_data(self, anonymous: httpx.AsyncClient) -> None:
        first = {"authorization": f"Bearer {_token({'sub': 'carol', 'exp': _in(600)})}"}
        second = {"authorization": f"Bearer {_token({'sub': 'carol', 'exp': _in(7200), 'iat': _in(0)})}"}
        thread = (await anonymous.post("/api/threads", headers=first)).json()["id"]
        assert (await anonymous.get(f"/api/threads/{thread}", headers=second)).status_code == 200

    async def test_single_user_mode_needs_no_token(self, client: httpx.AsyncClient, store: ChatStore) -> None:
        created = await client.post("/api/threads")
        assert created.status_code == 201
        assert [t.id for t in await store.list_threads("local")] == [created.json()["id"]]
