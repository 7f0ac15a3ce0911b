"""JWT-SVID and OIDC verification, including the attack table."""

from __future__ import annotations

import datetime as dt
import hmac
import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from authz.authn.jwks import FileJwks, StaticJwks, parse_jwks
from authz.authn.jwt import JwtPolicy, JwtVerifier, OidcIssuer, bearer_token
from authz.authn.trust import TrustBundles, TrustDomainBundle
from authz.engine.model import AuthMethod, EntityUid
from authz.errors import InvalidToken, UnknownKey
from meshward.clock import FixedClock
from meshward.spiffe import TrustDomain
from tests.support.tokens import SigningKey, b64url, ts, unsigned_token

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
TD = "meshward.test"
ISS = "https://idp.example"
SVID_KEY = SigningKey("svid-1")
OTHER_TD_KEY = SigningKey("other-1")
IDP_KEY = SigningKey("idp-1", kind="rsa")
ROGUE_KEY = SigningKey("idp-1", kind="rsa")  # same kid, different key


def svid_claims(**over: Any) -> dict[str, Any]:
    claims = {
        "sub": f"spiffe://{TD}/ns/default/sa/web",
        "aud": ["meshward"],
        "exp": ts(NOW) + 300,
        "iat": ts(NOW) - 10,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def user_claims(**over: Any) -> dict[str, Any]:
    claims = {
        "iss": ISS,
        "sub": "alice",
        "aud": "api",
        "exp": ts(NOW) + 600,
        "iat": ts(NOW) - 10,
        "groups": ["admins", "dev"],
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def verifier() -> JwtVerifier:
    bundles = TrustBundles.of(
        TrustDomainBundle(TrustDomain(TD), (), {SVID_KEY.kid: SVID_KEY.private.public_key()}),
        TrustDomainBundle(
            TrustDomain("other.test"), (), {OTHER_TD_KEY.kid: OTHER_TD_KEY.private.public_key()}
        ),
    )
    idp = OidcIssuer(
        ISS,
        frozenset({"api"}),
        StaticJwks(parse_jwks({"keys": [IDP_KEY.jwk]})),
        algorithms=frozenset({"RS256"}),
    )
    policy = JwtPolicy(leeway_seconds=30)
    return JwtVerifier(policy, bundles, [idp])


def test_jwt_svid_accepted(verifier: JwtVerifier) -> None:
    result = verifier.verify(SVID_KEY.sign(svid_claims()), NOW)
    assert result.identity.principal == EntityUid("Workload", f"spiffe://{TD}/ns/default/sa/web")
    assert result.identity.method is AuthMethod.JWT_SVID
    assert result.identity.expires_at == NOW + dt.timedelta(seconds=300)
    # The audience is kept to be bound to the request's destination, not checked here.
    assert result.audiences == frozenset({"meshward"})


def test_oidc_user_with_groups(verifier: JwtVerifier) -> None:
    result = verifier.verify(IDP_KEY.sign(user_claims()), NOW)
    assert result.identity.principal == EntityUid("User", f"{ISS}|alice")
    # Groups are the issuer's: another issuer cannot name them.
    assert result.identity.parents == (
        EntityUid("Group", f"{ISS}|admins"),
        EntityUid("Group", f"{ISS}|dev"),
    )
    assert result.identity.method is AuthMethod.OIDC
    assert result.claims["sub"] == "alice"
    assert result.audiences is None


def _hs256_with_public_key() -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": IDP_KEY.kid}
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(user_claims()).encode())
    )
    mac = hmac.new(IDP_KEY.public_pem, signing_input.encode(), sha256).digest()
    return signing_input + "." + b64url(mac)


# (case id, token factory, expected reason). Each token is otherwise valid.
ATTACKS: list[tuple[str, Any, str]] = [
    (
        "alg-none",
        lambda: unsigned_token({"alg": "none", "typ": "JWT", "kid": "svid-1"}, svid_claims()),
        "alg_not_allowed",
    ),
    ("hs256-with-public-key", _hs256_with_public_key, "alg_not_allowed"),
    ("expired", lambda: SVID_KEY.sign(svid_claims(exp=ts(NOW) - 31)), "expired"),
    (
        "not-yet-valid",
        lambda: SVID_KEY.sign(svid_claims(nbf=ts(NOW) + 31)),
        "not_yet_valid",
    ),
    ("issued-in-future", lambda: IDP_KEY.sign(user_claims(iat=ts(NOW) + 120)), "issued_in_future"),
    ("svid-aud-not-strings", lambda: SVID_KEY.sign(svid_claims(aud=[1, 2])), "bad_aud"),
    ("svid-aud-empty-list", lambda: SVID_KEY.sign(svid_claims(aud=[])), "bad_aud"),
    ("wrong-audience-user", lambda: IDP_KEY.sign(user_claims(aud="other")), "wrong_audience"),
    (
        "wrong-issuer",
        lambda: IDP_KEY.sign(user_claims(iss="https://evil.example")),
        "unknown_issuer",
    ),
    ("unknown-kid-svid", lambda: SigningKey("nope").sign(svid_claims()), "unknown_kid"),
    (
        "unknown-kid-user",
        lambda: ROGUE_KEY.sign(user_claims(), headers={"kid": "k9"}),
        "unknown_kid",
    ),
    ("forged-signature", lambda: ROGUE_KEY.sign(user_claims()), "bad_signature"),
    ("missing-exp", lambda: SVID_KEY.sign(svid_claims(exp=None)), "missing_exp"),
    ("missing-aud", lambda: SVID_KEY.sign(svid_claims(aud=None)), "missing_aud"),
    ("oversized", lambda: SVID_KEY.sign(svid_claims(pad="x" * 9000)), "oversized"),
    # PyJWT itself refuses a crit extension it does not know while parsing.
    ("crit-header", lambda: SVID_KEY.sign(svid_claims(), headers={"crit": ["exp"]}), "malformed"),
    ("bad-typ", lambda: SVID_KEY.sign(svid_claims(), headers={"typ": "secevent+jwt"}), "bad_typ"),
    (
        "other-trust-domain-sub",
        lambda: SVID_KEY.sign(svid_claims(sub="spiffe://evil.test/web")),
        "foreign_trust_domain",
    ),
    (
        "other-trust-domain-key",
        lambda: OTHER_TD_KEY.sign(svid_claims()),
        "unknown_kid",
    ),
    ("missing-kid", lambda: SVID_KEY.sign(svid_claims(), headers={"kid": ""}), "missing_kid"),
    ("garbage", lambda: "not.a.jwt", "malformed"),
    ("empty-segments", lambda: "..", "malformed"),
    (
        "bad-sub",
        lambda: SVID_KEY.sign(svid_claims(sub="spiffe://meshward.test/a//b")),
        "bad_subject",
    ),
    ("sub-with-newline", lambda: IDP_KEY.sign(user_claims(sub="a\r\nx-evil: 1")), "bad_subject"),
    ("exp-is-string", lambda: SVID_KEY.sign(svid_claims(exp="tomorrow")), "bad_exp"),
    (
        "alg-not-allowed-for-issuer",
        lambda: SigningKey("idp-1").sign(user_claims()),
        "alg_not_allowed",
    ),
]


@pytest.mark.parametrize(
    ("token_factory", "reason"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_attack_rejected(verifier: JwtVerifier, token_factory: Any, reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token_factory(), NOW)
    assert info.value.code == reason


@pytest.mark.parametrize(("offset", "ok"), [(29, True), (30, False), (31, False)])
def test_expiry_with_leeway_one_second_either_side(
    verifier: JwtVerifier, offset: int, ok: bool
) -> None:
    token = SVID_KEY.sign(svid_claims(exp=ts(NOW) - offset))
    if ok:
        assert verifier.verify(token, NOW).identity.method is AuthMethod.JWT_SVID
    else:
        with pytest.raises(InvalidToken):
            verifier.verify(token, NOW)


def test_cached_token_expires(verifier: JwtVerifier) -> None:
    token = SVID_KEY.sign(svid_claims(exp=ts(NOW) + 5))
    assert verifier.verify(token, NOW).identity.expires_at is not None
    assert verifier.verify(token, NOW).identity.expires_at is not None  # from the cache
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token, NOW + dt.timedelta(seconds=35))
    assert info.value.code == "expired"


def test_leeway_is_bounded() -> None:
    with pytest.raises(ValueError):
        JwtPolicy(leeway_seconds=61)


def test_symmetric_algorithms_cannot_be_allowed() -> None:
    with pytest.raises(ValueError):
        OidcIssuer(
            ISS, frozenset({"api"}), StaticJwks(parse_jwks({"keys": []})), frozenset({"HS256"})
        )


def test_jwks_skips_symmetric_and_pinned_alg_mismatch(verifier: JwtVerifier) -> None:
    keys = parse_jwks({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}, IDP_KEY.jwk]})
    assert set(keys.keys) == {IDP_KEY.kid}
    pinned = {**IDP_KEY.jwk, "alg": "PS256"}
    idp = OidcIssuer(
        ISS,
        frozenset({"api"}),
        StaticJwks(parse_jwks({"keys": [pinned]})),
        frozenset({"RS256", "PS256"}),
    )
    strict = JwtVerifier(JwtPolicy(), TrustBundles(), [idp])
    with pytest.raises(InvalidToken) as info:
        strict.verify(IDP_KEY.sign(user_claims()), NOW)
    assert info.value.code == "alg_key_mismatch"


async def test_unknown_kid_refreshes_file_jwks_with_rate_limit(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [IDP_KEY.jwk]}))
    source = FileJwks(path, clock, min_refresh_seconds=30)
    source.load()
    idp = OidcIssuer(ISS, frozenset({"api"}), source, frozenset({"RS256"}))
    verifier = JwtVerifier(JwtPolicy(), TrustBundles(), [idp])
    rotated = SigningKey("idp-2", kind="rsa")
    token = rotated.sign(user_claims())
    # The new key is published, but a refresh ran less than 30 s ago.
    path.write_text(json.dumps({"keys": [IDP_KEY.jwk, rotated.jwk]}))
    with pytest.raises(UnknownKey):
        await verifier.authenticate(token, NOW)
    clock.advance(30)
    result = await verifier.authenticate(token, NOW)
    assert result.identity.principal == EntityUid("User", f"{ISS}|alice")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_an_issuer_cannot_spell_another_issuers_groups() -> None:
    # Group::"<issuer>|<group>": an issuer "https://a|admins" could otherwise
    # name the group "admins" of issuer "https://a".
    with pytest.raises(ValueError):
        OidcIssuer("https://a|admins", frozenset({"api"}), StaticJwks(parse_jwks({"keys": []})))
