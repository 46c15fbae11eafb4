"""Who is calling: the one dependency every route uses to scope its reads and writes.

Two kinds of credentials can be configured, and every kind configured is accepted:

* **JWTs**: ``Authorization: Bearer <JWT>``. HS256 with ``CHATKEEP_JWT_SECRET``, and/or RS256/ES256 verified
  against ``CHATKEEP_JWKS_URL`` (the key set is cached and fetched again when a token names an unknown ``kid``).
  A key verifies only the algorithm its JWK states (stating none, the one its type and curve imply: RS256 for RSA,
  ES256/ES384/ES512 by curve); a token naming another algorithm for its ``kid`` is a 401.
  ``CHATKEEP_JWT_ISSUER`` / ``CHATKEEP_JWT_AUDIENCE`` are checked when set; the user id is the claim named by
  ``CHATKEEP_JWT_USER_CLAIM`` (``sub``). Works with tokens from Auth.js, Clerk, Auth0 or Supabase. A token needs
  an ``exp`` (HS256 tokens without one are accepted only with ``CHATKEEP_JWT_REQUIRE_EXP=false``); ``exp`` and
  ``nbf`` are checked with :data:`LEEWAY_S` of leeway for clocks that disagree.
* Server-to-server **API keys** (``CHATKEEP_API_KEYS``: SHA-256 hashes, never the keys): ``Authorization: Bearer
  ck_…`` acts for the user named in the ``X-Chatkeep-User`` header; a Next.js (or any) backend calling on behalf of
  its users. A deployment only a backend calls needs nothing else.

The invariant: **while any credential is configured, a request without a valid one is a 401**; only with none
configured is there no authentication, every request acting as the one local user (``CHATKEEP_LOCAL_USER_ID``),
and ``chatkeep serve`` then refuses to listen beyond loopback unless told ``--allow-unauthenticated``.
``CHATKEEP_AUTH`` only checks that the configuration is the one intended: ``auto`` (the default) takes whatever is
configured; ``jwt`` and ``api-keys`` refuse to start without a credential of that kind; ``none`` refuses to start
with any (a credential that would be ignored is a mistake, not a setting).

Failed authentications that guessing produces (a token whose signature or key is wrong, a malformed token, an
unknown API key; not an expired token or a missing claim, whose signature is genuine) are counted per client
address, in Redis when configured: over ``CHATKEEP_AUTH_FAILURES_PER_MINUTE``, every request from that address
that needs authentication is a 429 until the minute ends, valid credentials included (so a guess that succeeds
does not show). A process learns that an address is over the limit from a failure of its own (the window only
counts), so across ``n`` processes an address gets at most ``n`` more guesses a minute than the limit.

Library users replace :func:`get_current_user` with their own dependency through
``app.dependency_overrides[get_current_user] = …``; it returns the user id as a string.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from chatkeep.api.limits import LocalWindow, RateLimiter, RedisWindow
from chatkeep.chat.redis_link import RedisLink
from chatkeep.errors import InvalidConfiguration, TooManyRequests, Unauthorized
from chatkeep.settings import Settings

__all__ = [
    "API_KEY_PREFIX",
    "LEEWAY_S",
    "Authenticator",
    "CurrentUser",
    "get_current_user",
    "hash_api_key",
    "limited_user",
    "new_api_key",
]

API_KEY_PREFIX = "ck_"
_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]
#: seconds a token is still accepted after its ``exp`` (and before its ``nbf``): clocks disagree a little
LEEWAY_S = 30
#: failures are counted in the per-minute windows of :mod:`chatkeep.api.limits` under this prefix and the client's
#: address: a NUL, which no user id holds, so no user's request count can ever be an address's failure count
_FAILURES_KEY = "\x00auth-failures:"
#: addresses blocked at once, at most; beyond it the expired blocks are dropped (bounded memory)
_MAX_BLOCKED = 10_000


class _NotGenuine(Unauthorized):
    """Credentials that are not genuine: the only failures counted against the client's address."""


def new_api_key() -> tuple[str, str]:
    """A fresh API key and the hash to configure (``CHATKEEP_API_KEYS=sha256:…``). Only the hash is kept."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    """Turns a request's credentials into a user id, as configured by :class:`Settings`."""

    def __init__(self, settings: Settings, *, redis: RedisLink | None = None) -> None:
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._jwks = (
            jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=600, cooldown_duration=settings.jwks_refresh_s, timeout=10
            )
            if settings.jwks_url
            else None
        )
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._claim = settings.jwt_user_claim
        self._local_user = settings.local_user_id
        self._api_keys = frozenset(h.strip().lower() for h in settings.api_keys if h.strip())
        self._user_header = settings.api_key_user_header
        self._require_exp = settings.jwt_require_exp
        self._jwt = bool(self._secret or self._jwks)
        _check_mode(settings, jwt=self._jwt, api_keys=bool(self._api_keys))
        #: whether callers must present credentials: any is configured (else everyone is the one local user)
        self.enabled = self._jwt or bool(self._api_keys)
        self._failures: RateLimiter | None = None
        per_minute = settings.auth_failures_per_minute
        if per_minute and self.enabled:
            self._failures = RedisWindow(redis, per_minute) if redis is not None else LocalWindow(per_minute)
        #: address → when its block ends (``time.time()``): this process refuses it without asking the window
        self._blocked: dict[str, float] = {}

    async def user_id(
        self, authorization: str | None, acting_for: str | None = None, *, client: str | None = None
    ) -> str:
        """The caller's user id, or :class:`Unauthorized`; with ``client`` (its address), failures are counted and
        an address over the limit gets :class:`TooManyRequests` (see the module docstring)."""
        if client is None or self._failures is None:
            return await self._user_id(authorization, acting_for)
        blocked_until = self._blocked.get(client)
        if blocked_until is not None:
            if blocked_until > time.time():
                raise _too_many_failures(blocked_until)
            del self._blocked[client]
        try:
            return await self._user_id(authorization, acting_for)
        except _NotGenuine:
            await self._count_failure(client)
            raise

    async def _count_failure(self, client: str) -> None:
        assert self._failures is not None
        try:
            await self._failures.hit(_FAILURES_KEY + client)
        except TooManyRequests as exc:
            if len(self._blocked) >= _MAX_BLOCKED:
                now = time.time()
                self._blocked = {address: until for address, until in self._blocked.items() if until > now}
            until = time.time() + exc.retry_after
            self._blocked[client] = until
            raise _too_many_failures(until) from None

    async def _user_id(self, authorization: str | None, acting_for: str | None) -> str:
        if not self.enabled:
            return self._local_user
        token = _bearer(authorization)
        if token is None:
            raise Unauthorized("Send 'Authorization: Bearer <token>'.")
        if token.startswith(API_KEY_PREFIX) and self._api_keys:
            return self._api_key_user(token, acting_for)
        if not self._jwt:
            raise _NotGenuine("Only API keys are accepted here: send 'Authorization: Bearer ck_…'.")
        claims = await self._verify(token)
        subject = claims.get(self._claim)
        if not isinstance(subject, str) or not subject or len(subject) > 255 or "\x00" in subject:
            raise Unauthorized(f"The token has no usable {self._claim!r} claim.")
        return subject

    def _api_key_user(self, key: str, acting_for: str | None) -> str:
        digest = hash_api_key(key)
        if not any(hmac.compare_digest(digest, known) for known in self._api_keys):
            raise _NotGenuine("The API key is not valid.")
        if not acting_for or len(acting_for) > 255 or "\x00" in acting_for:
            raise Unauthorized(f"An API key acts for a user: name them in the {self._user_header} header.")
        return acting_for

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _NotGenuine("The token is not valid.") from None
        algorithm = header.get("alg")
        options = {"require": ["exp"] if self._require_exp or algorithm != "HS256" else []}
        kwargs: dict[str, Any] = {"leeway": LEEWAY_S, "options": options}
        if self._issuer:
            kwargs["issuer"] = self._issuer
        if self._audience:
            kwargs["audience"] = self._audience
        else:
            kwargs["options"] = {**options, "verify_aud": False}
        try:
            if algorithm == "HS256" and self._secret:
                return jwt.decode(token, self._secret, algorithms=["HS256"], **kwargs)
            if algorithm in _ASYMMETRIC and self._jwks is not None:
                # PyJWKClient fetches with blocking I/O: keep it off the event loop. It caches the key set and
                # fetches it again (at most every CHATKEEP_JWKS_REFRESH_S) when a token names an unknown kid.
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                # The PyJWK itself, not its bare key: PyJWT then verifies only with the one algorithm the key is
                # bound to (its JWK's "alg", or the one its type and curve imply when it states none) and refuses
                # any other the token names (InvalidAlgorithmError), instead of handing an EC key to RSA (a
                # TypeError, that was a 500) or accepting RS384 for a key meant for RS256.
                return jwt.decode(token, key, algorithms=[algorithm], **kwargs)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"The token has no {exc.claim!r} claim; tokens must say when they expire.") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The token was issued by someone else.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The token is meant for another audience.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The token is not valid yet.") from None
        except jwt.PyJWKClientConnectionError:  # the identity provider's fault, not the caller's: not counted
            raise Unauthorized("The token is not valid.") from None
        except (jwt.PyJWTError, jwt.PyJWKClientError):
            raise _NotGenuine("The token is not valid.") from None
        raise _NotGenuine(f"Tokens signed with {algorithm!r} are not accepted here.")


def _check_mode(settings: Settings, *, jwt: bool, api_keys: bool) -> None:
    """Refuse a ``CHATKEEP_AUTH`` that the credentials configured contradict (see the module docstring)."""
    mode = settings.auth
    if mode == "jwt" and not jwt:
        raise InvalidConfiguration("CHATKEEP_AUTH=jwt needs CHATKEEP_JWT_SECRET or CHATKEEP_JWKS_URL")
    if mode == "api-keys" and not api_keys:
        raise InvalidConfiguration("CHATKEEP_AUTH=api-keys needs CHATKEEP_API_KEYS (make one with 'chatkeep keys new')")
    if mode == "none" and (jwt or api_keys):
        configured = [
            name
            for name, value in [
                ("CHATKEEP_JWT_SECRET", settings.jwt_secret),
                ("CHATKEEP_JWKS_URL", settings.jwks_url),
                ("CHATKEEP_API_KEYS", api_keys),
            ]
            if value
        ]
        raise InvalidConfiguration(
            f"CHATKEEP_AUTH=none, but credentials are configured ({', '.join(configured)}) that no request would "
            "need: unset them, or unset CHATKEEP_AUTH to require them"
        )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <token>'.")
    return token.strip()


def _too_many_failures(until: float) -> TooManyRequests:
    return TooManyRequests(
        "Too many failed authentications from this address; try again later.", retry_after=int(until - time.time()) + 1
    )


async def get_current_user(request: Request) -> str:
    """The caller's user id. Override this dependency to plug in your own authentication."""
    state = request.app.state.chatkeep
    authenticator: Authenticator = state.authenticator
    return await authenticator.user_id(
        request.headers.get("authorization"),
        request.headers.get(state.settings.api_key_user_header),
        client=request.client.host if request.client else None,
    )


async def limited_user(request: Request, user_id: Annotated[str, Depends(get_current_user)]) -> str:
    """The caller (as :func:`get_current_user`, or your override of it says), counted against the per-user request
    limit."""
    limiter = request.app.state.chatkeep.limiter
    if limiter is not None:
        await limiter.hit(user_id)
    return user_id


CurrentUser = Annotated[str, Depends(limited_user)]
