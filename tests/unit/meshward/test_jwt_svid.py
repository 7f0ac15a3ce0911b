"""The one JWT-SVID validator: vectors, and agreement with py-spiffe on each.

Every token is made here with PyJWT from an otherwise valid JWT-SVID; the
case name says what was changed. py-spiffe checks expiry against the real
clock, so both validators run at the same real "now": ``NOW`` is taken again
before each test (the suite can run for longer than a token lives).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from spiffe import JwtBundle, JwtSvid
from spiffe import TrustDomain as PyTrustDomain

from meshward.clock import SystemClock
from meshward.jwk import Jwk, PublicKey
from meshward.jwt_svid import InvalidJwtSvid, JwtSvidRules, requested_audience, validate_jwt_svid
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle

TD = TrustDomain("example.org")
NOW = SystemClock().now().replace(microsecond=0)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(65537, 2048)
KEYS: dict[str, PublicKey] = {"ec-1": EC_KEY.public_key(), "rsa-1": RSA_KEY.public_key()}


@pytest.fixture(autouse=True)
def _real_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens and both validators use the real clock at the time the test runs."""
    monkeypatch.setitem(globals(), "NOW", SystemClock().now().replace(microsecond=0))


def _lookup(td: TrustDomain) -> Mapping[str, PublicKey | Jwk] | None:
    return KEYS if td == TD else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make(
    headers: dict[str, Any] | None = None,
    alg: str = "ES256",
    key: Any = None,
    **claims: Any,
) -> str:
    body: dict[str, Any] = {
        "sub": "spiffe://example.org/web",
        "aud": ["orders"],
        "exp": int(NOW.timestamp()) + 300,
        "iat": int(NOW.timestamp()),
    }
    for name, value in claims.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    head = {"kid": "ec-1", "typ": "JWT"} if headers is None else headers
    signer = key if key is not None else (EC_KEY if alg.startswith("ES") else RSA_KEY)
    return jwt.encode(body, signer, algorithm=alg, headers=head)


def _hs256_with_public_key() -> str:
    pub = EC_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "kid": "ec-1", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": "spiffe://example.org/web", "aud": "orders",
                            "exp": int(NOW.timestamp()) + 60}).encode())  # fmt: skip
    sig = _b64(hmac.new(pub, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def _unsigned(header: dict[str, Any]) -> str:
    body = {"sub": "spiffe://example.org/web", "aud": "orders", "exp": int(NOW.timestamp()) + 60}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}."


# (case, token factory, our reason or None when valid)
VECTORS: list[tuple[str, Callable[[], str], str | None]] = [
    ("valid_es256", make, None),
    ("valid_rs256", lambda: make({"kid": "rsa-1"}, alg="RS256"), None),
    ("valid_ps256", lambda: make({"kid": "rsa-1"}, alg="PS256"), None),
    ("typ_jose", lambda: make({"kid": "ec-1", "typ": "JOSE"}), None),
    ("typ_at_jwt", lambda: make({"kid": "ec-1", "typ": "at+jwt"}), "bad_typ"),
    ("typ_secevent", lambda: make({"kid": "ec-1", "typ": "secevent+jwt"}), "bad_typ"),
    ("alg_none", lambda: _unsigned({"alg": "none", "kid": "ec-1"}), "alg_not_allowed"),
    ("hs256_with_public_key", _hs256_with_public_key, "alg_not_allowed"),
    ("missing_kid", lambda: make({"typ": "JWT"}), "missing_kid"),
    ("unknown_kid", lambda: make({"kid": "nope"}), "unknown_kid"),
    ("wrong_key", lambda: make(key=ec.generate_private_key(ec.SECP256R1())), "bad_signature"),
    ("wrong_audience", lambda: make(aud=["billing"]), "wrong_audience"),
    ("missing_aud", lambda: make(aud=None), "missing_aud"),
    ("missing_exp", lambda: make(exp=None), "missing_exp"),
    ("expired", lambda: make(exp=int(NOW.timestamp()) - 1), "expired"),
    ("sub_not_spiffe", lambda: make(sub="web"), "bad_subject"),
    ("sub_other_domain", lambda: make(sub="spiffe://other.org/web"), "foreign_trust_domain"),
    ("garbage", lambda: "not.a.jwt", "malformed"),
]


@pytest.mark.parametrize(("make_token", "reason"), [v[1:] for v in VECTORS],
                         ids=[v[0] for v in VECTORS])  # fmt: skip
def test_vectors(make_token: Callable[[], str], reason: str | None) -> None:
    token = make_token()
    if reason is None:
        svid = validate_jwt_svid(token, _lookup, ["orders"], NOW)
        assert str(svid.spiffe_id) == "spiffe://example.org/web"
        assert svid.expires_at == NOW + dt.timedelta(seconds=300)
        return
    with pytest.raises(InvalidJwtSvid) as err:
        validate_jwt_svid(token, _lookup, ["orders"], NOW)
    assert err.value.reason == reason


def _py_bundle() -> JwtBundle:
    doc = SpiffeBundle(TD, (), KEYS).to_jwks()
    return JwtBundle.parse(PyTrustDomain("example.org"), json.dumps(doc).encode())


@pytest.mark.parametrize(("make_token", "reason"), [v[1:] for v in VECTORS],
                         ids=[v[0] for v in VECTORS])  # fmt: skip
def test_py_spiffe_agrees(make_token: Callable[[], str], reason: str | None) -> None:
    token = make_token()
    try:
        JwtSvid.parse_and_validate(token, _py_bundle(), {"orders"})
        py_accepts = True
    except Exception:  # py-spiffe raises several unrelated types
        py_accepts = False
    assert py_accepts == (reason is None)


def test_size_limit_and_leeway() -> None:
    rules = JwtSvidRules(max_token_bytes=600, leeway_seconds=30)
    with pytest.raises(InvalidJwtSvid) as err:
        validate_jwt_svid(make(pad="x" * 600), _lookup, ["orders"], NOW, rules)
    assert err.value.reason == "oversized"
    exp = int(NOW.timestamp()) + 10
    token = make(exp=exp)
    at = dt.datetime.fromtimestamp(exp, dt.UTC)
    validate_jwt_svid(token, _lookup, ["orders"], at + dt.timedelta(seconds=29), rules)
    with pytest.raises(InvalidJwtSvid):
        validate_jwt_svid(token, _lookup, ["orders"], at + dt.timedelta(seconds=30), rules)
    with pytest.raises(InvalidJwtSvid) as strict:
        validate_jwt_svid(token, _lookup, ["orders"], at)  # default leeway 0: expired at exp
    assert strict.value.reason == "expired"
    validate_jwt_svid(token, _lookup, ["orders"], at - dt.timedelta(seconds=1))


def test_a_jwk_pinning_another_algorithm_is_refused() -> None:
    pinned = {"ec-1": Jwk(EC_KEY.public_key(), "ES384")}
    with pytest.raises(InvalidJwtSvid) as err:
        validate_jwt_svid(make(), lambda td: pinned, ["orders"], NOW)
    assert err.value.reason == "alg_key_mismatch"


@pytest.mark.parametrize(
    "rules",
    [
        {"algorithms": frozenset({"HS256"})},
        {"algorithms": frozenset({"EdDSA"})},
        {"leeway_seconds": 61},
        {"max_token_bytes": 0},
    ],
)
def test_rules_refuse_unsafe_settings(rules: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JwtSvidRules(**rules)


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        ("a", ["a"]),
        (["a", "b", "a"], ["a", "b"]),
        ([f"a{i}" for i in range(16)], [f"a{i}" for i in range(16)]),
        ([], None),
        ([""], None),
        (["x" * 257], None),
        ([f"a{i}" for i in range(17)], None),
        ([1], None),
        ({"a": 1}, None),
        (None, None),
    ],
)
def test_requested_audience(audience: object, expected: list[str] | None) -> None:
    assert requested_audience(audience) == expected
