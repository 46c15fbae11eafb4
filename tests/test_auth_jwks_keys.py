"""JWKS mode: a token is verified only with a key meant for its algorithm (issue #12, point 8).

The token header names an algorithm and a ``kid``; the key set says what each key is. A token naming ``RS256``
with the ``kid`` of an EC key (or ``ES256`` with an RSA key's), ``ES384`` with a P-256 key, or ``RS384`` with a
key that states ``"alg": "RS256"`` is refused with a 401 and the JSON error body, and nothing is logged as an
unexpected error. The key set is served by a real local HTTP server (see ``test_auth_modes.py``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.test_auth_modes import JWKS, bearer, ec_key, jwks, jwks_client, rsa_key, token

__all__ = ["jwks", "jwks_client"]  # the fixtures, shared with test_auth_modes.py

RSA_PRIVATE, RSA_PUBLIC = rsa_key("rsa")
EC_PRIVATE, EC_PUBLIC = ec_key("ec")
_P384 = ec.generate_private_key(ec.SECP384R1())
UNSTATED = {k: v for k, v in RSA_PUBLIC.items() if k != "alg"} | {"kid": "rsa-no-alg"}
KEYS = [
    RSA_PUBLIC,
    EC_PUBLIC,
    UNSTATED,
    {**json.loads(ECAlgorithm.to_jwk(_P384.public_key())), "kid": "p384", "use": "sig"},  # no "alg": ES384 by curve
]

# name → (the private key that signs, the token header's alg, the kid it names)
MISMATCHES: dict[str, tuple[Any, str, str]] = {
    "rs256-names-the-ec-key": (RSA_PRIVATE, "RS256", "ec"),
    "es256-names-the-rsa-key": (EC_PRIVATE, "ES256", "rsa"),
    "es256-signed-right-names-the-rsa-key": (EC_PRIVATE, "ES256", "rsa-no-alg"),
    "rs384-with-a-key-stating-rs256": (RSA_PRIVATE, "RS384", "rsa"),
    "ps256-with-a-key-stating-rs256": (RSA_PRIVATE, "PS256", "rsa"),
    "es384-names-a-p256-key": (_P384, "ES384", "ec"),
    "es256-names-a-p384-key": (EC_PRIVATE, "ES256", "p384"),
    "rs256-names-the-p384-key": (RSA_PRIVATE, "RS256", "p384"),
    "es512-names-the-ec-key": (ec.generate_private_key(ec.SECP521R1()), "ES512", "ec"),
}


@pytest.mark.parametrize(("signer", "alg", "kid"), MISMATCHES.values(), ids=MISMATCHES.keys())
async def test_a_key_of_another_algorithm_is_a_401(
    jwks_client: httpx.AsyncClient, jwks: JWKS, caplog: pytest.LogCaptureFixture, signer: Any, alg: str, kid: str
) -> None:
    jwks.keys = KEYS
    with caplog.at_level(logging.DEBUG):
        response = await jwks_client.get("/api/threads", headers=bearer(token(signer, kid, alg)))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and "not valid" in error["message"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_each_key_still_verifies_its_own_algorithm(jwks_client: httpx.AsyncClient, jwks: JWKS) -> None:
    """The control: the same key set accepts each key with the algorithm it states, or (stating none) the one its
    type and curve imply."""
    jwks.keys = KEYS
    for signer, alg, kid in [
        (RSA_PRIVATE, "RS256", "rsa"),
        (EC_PRIVATE, "ES256", "ec"),
        (RSA_PRIVATE, "RS256", "rsa-no-alg"),
        (_P384, "ES384", "p384"),
    ]:
        response = await jwks_client.get("/api/threads", headers=bearer(token(signer, kid, alg)))
        assert response.status_code == 200, (alg, kid, response.text)
