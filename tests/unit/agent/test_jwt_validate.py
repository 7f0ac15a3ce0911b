"""JWT-SVID validation vectors; each token is built here, and how is in its name."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from agent.jwt_validate import InvalidJwtSvid, validate_jwt_svid
from meshward.clock import FixedClock
from tests.support.authority import LocalAuthority
from tests.support.tokens import unsigned_token

NOW = dt.datetime(2026, 2, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def authority() -> LocalAuthority:
    return LocalAuthority(FixedClock(NOW))


def _pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def token(authority: LocalAuthority, **overrides: Any) -> str:
    claims = {
        "sub": "spiffe://example.org/web",
        "aud": ["orders"],
        "exp": int(NOW.timestamp()) + 300,
        "iat": int(NOW.timestamp()),
    }
    headers = {"kid": authority.kid}
    key: Any = _pem(authority.jwt_key)
    alg = "ES256"
    for name, value in overrides.items():
        if name == "headers":
            headers = value
        elif name == "key":
            key = value
        elif name == "alg":
            alg = value
        elif value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def test_valid_token(authority: LocalAuthority) -> None:
    spiffe_id, claims = validate_jwt_svid(token(authority), "orders", authority.bundle(), NOW)
    assert str(spiffe_id) == "spiffe://example.org/web"
    assert claims["aud"] == ["orders"]


@pytest.mark.parametrize("typ", ["JWT", "JOSE", None])
def test_typ_absent_jwt_or_jose_is_accepted(authority: LocalAuthority, typ: str | None) -> None:
    headers = {"kid": authority.kid} | ({"typ": typ} if typ else {})
    validate_jwt_svid(token(authority, headers=headers), "orders", authority.bundle(), NOW)


def test_expiry_one_second_either_side(authority: LocalAuthority) -> None:
    exp = int(NOW.timestamp()) + 10
    t = token(authority, exp=exp)
    before = dt.datetime.fromtimestamp(exp - 1, dt.UTC)
    at = dt.datetime.fromtimestamp(exp, dt.UTC)
    validate_jwt_svid(t, "orders", authority.bundle(), before)
    with pytest.raises(InvalidJwtSvid) as err:
        validate_jwt_svid(t, "orders", authority.bundle(), at)
    assert err.value.reason == "expired"


CLAIMS = {"sub": "spiffe://example.org/web", "aud": "orders", "exp": int(NOW.timestamp()) + 60}


def _hs256_with_public_key(a: LocalAuthority) -> str:
    # HS/ES confusion: an HMAC "signed" with the public key's bytes.
    pub = a.jwt_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = unsigned_token({"alg": "HS256", "kid": a.kid}, CLAIMS).rstrip(".")
    return unsigned_token(
        {"alg": "HS256", "kid": a.kid},
        CLAIMS,
        hmac.new(pub, signed.encode(), hashlib.sha256).digest(),
    )


def _alg_none(a: LocalAuthority) -> str:
    return unsigned_token({"alg": "none", "typ": "JWT", "kid": a.kid}, CLAIMS)


CASES = {
    "alg_none": (_alg_none, "alg_not_allowed"),
    "hs256_with_public_key": (_hs256_with_public_key, "alg_not_allowed"),
    "wrong_audience": (lambda a: token(a, aud=["billing"]), "wrong_audience"),
    "no_exp": (lambda a: token(a, exp=None), "missing_exp"),
    "no_aud": (lambda a: token(a, aud=None), "missing_aud"),
    "unknown_kid": (lambda a: token(a, headers={"kid": "nope"}), "unknown_kid"),
    "no_kid": (lambda a: token(a, headers={}), "missing_kid"),
    "other_key_same_kid": (
        lambda a: token(a, key=_pem(ec.generate_private_key(ec.SECP256R1()))),
        "bad_signature",
    ),
    "foreign_trust_domain": (
        lambda a: token(a, sub="spiffe://other.org/web"),
        "foreign_trust_domain",
    ),
    "subject_not_spiffe": (lambda a: token(a, sub="web"), "bad_subject"),
    "not_yet_valid": (
        lambda a: token(a, nbf=int(NOW.timestamp()) + 5),
        "not_yet_valid",
    ),
    "garbage": (lambda a: "not.a.jwt", "malformed"),
    "oversized": (lambda a: "a" * 20000, "oversized"),
    "empty": (lambda a: "", "malformed"),
    # JWT-SVID §2.3: typ is absent, JWT or JOSE; an OAuth access token is not an SVID.
    "typ_at_jwt": (lambda a: token(a, headers={"kid": a.kid, "typ": "at+jwt"}), "bad_typ"),
    "typ_application_at_jwt": (
        lambda a: token(a, headers={"kid": a.kid, "typ": "application/at+jwt"}),
        "bad_typ",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected(authority: LocalAuthority, case: str) -> None:
    make, reason = CASES[case]
    with pytest.raises(InvalidJwtSvid) as err:
        validate_jwt_svid(make(authority), "orders", authority.bundle(), NOW)
    assert err.value.reason == reason
