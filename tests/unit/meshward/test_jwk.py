"""The one JWK codec: round trips for every supported key type, and refusals."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshward.jwk import InvalidJwk, jwk_thumbprint, jwk_to_public_key, public_key_to_jwk, same_key

KEYS = [
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    ec.generate_private_key(ec.SECP384R1()).public_key(),
    ec.generate_private_key(ec.SECP521R1()).public_key(),
    rsa.generate_private_key(65537, 2048).public_key(),
    ed25519.Ed25519PrivateKey.generate().public_key(),
]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: type(k).__name__)
def test_round_trip(key: Any) -> None:
    assert same_key(jwk_to_public_key(public_key_to_jwk(key)), key)


def test_rfc7638_thumbprint_vector() -> None:
    # RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    key = jwk_to_public_key({"kty": "RSA", "n": n, "e": "AQAB"})
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "unsupported_key"),
        ({"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}, "unsupported_key"),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "bad_jwk"),
        ({"kty": "EC", "crv": "P-256", "x": 1, "y": 2}, "bad_jwk"),
        ({"kty": "OKP", "crv": "X25519", "x": "AA"}, "unsupported_key"),
        ({}, "unsupported_key"),
    ],
)
def test_refused(jwk: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidJwk) as err:
        jwk_to_public_key(jwk)
    assert err.value.reason == reason
