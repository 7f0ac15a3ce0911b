"""JWT-SVID validation, one set of rules for every verifier (the PDP, the CA, the agent).

The JWT-SVID spec (§2, §3, §7) and what meshward adds, checked in this order;
each failure is an :class:`InvalidJwtSvid` whose ``reason`` is a short code:

1. size: at most ``max_token_bytes`` (``oversized``), not empty;
2. header: parses (``malformed``); ``alg`` is asymmetric and allowed
   (``alg_not_allowed``: never ``none`` nor ``HS*``); no ``crit``
   (``crit_header``); ``typ`` absent, ``JWT`` or ``JOSE`` (§2.3 — so
   ``at+jwt`` is ``bad_typ``); ``kid`` present (``missing_kid``);
3. ``sub`` is a SPIFFE ID (``bad_subject``) of a trust domain the caller
   holds keys for (``foreign_trust_domain``), and ``kid`` names one of those
   keys (``unknown_kid``); a key whose JWK pins another ``alg`` is
   ``alg_key_mismatch``;
4. signature (``bad_signature``); ``aud`` present (``missing_aud``) and
   holding one of the accepted audiences (``wrong_audience``) — unless the
   caller passes ``audiences=None`` because it binds the audience itself (the
   PDP binds it to each request's destination); ``exp`` present
   (``missing_exp``);
5. times against the injected ``now`` with ``leeway_seconds`` (0..60):
   ``expired`` at ``exp`` (+ leeway), ``not_yet_valid`` before ``nbf``,
   ``issued_in_future`` before ``iat``; non-numeric ``exp``/``nbf``/``iat``
   are ``bad_<claim>``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from meshward.jwk import Jwk, PublicKey
from meshward.spiffe import InvalidSpiffeId, SpiffeId, TrustDomain

__all__ = [
    "ALGORITHMS",
    "DEFAULT_MAX_TOKEN_BYTES",
    "MAX_LEEWAY_SECONDS",
    "TYPES",
    "InvalidJwtSvid",
    "JwtSvid",
    "JwtSvidRules",
    "KeyLookup",
    "Unverified",
    "check_times",
    "decode_signed",
    "read_unverified",
    "validate_jwt_svid",
]

# JWT-SVID §3: RS/ES/PS 256-512; HS* and none are never acceptable.
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
TYPES = frozenset({"JWT", "JOSE"})  # JWT-SVID §2.3
DEFAULT_MAX_TOKEN_BYTES = 8 * 1024
MAX_LEEWAY_SECONDS = 60


class InvalidJwtSvid(ValueError):
    """A token that is not a valid JWT-SVID for us; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(
            f"invalid JWT-SVID: {reason.replace('_', ' ')}" + (f": {detail}" if detail else "")
        )
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JwtSvidRules:
    """Limits of one verifier; the defaults are meshward's rules everywhere."""

    algorithms: frozenset[str] = ALGORITHMS
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    leeway_seconds: int = 0

    def __post_init__(self) -> None:
        bad = set(self.algorithms) - ALGORITHMS
        if bad:
            raise ValueError(f"JWT-SVID algorithms must be asymmetric: {sorted(bad)}")
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"JWT-SVID leeway must be 0..{MAX_LEEWAY_SECONDS} s")
        if self.max_token_bytes <= 0:
            raise ValueError("max_token_bytes must be positive")


@dataclass(frozen=True, slots=True)
class JwtSvid:
    """A JWT-SVID that passed every check."""

    spiffe_id: SpiffeId
    claims: Mapping[str, Any]
    expires_at: dt.datetime
    kid: str


# The JWT authorities of a trust domain (kid -> key), or None for a domain we do not trust.
KeyLookup = Callable[[TrustDomain], Mapping[str, PublicKey | Jwk] | None]


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidJwtSvid(f"bad_{name}")
    return float(value)


def check_times(claims: Mapping[str, Any], now: dt.datetime, leeway: int) -> dt.datetime:
    """``exp``/``nbf``/``iat`` against ``now`` (± ``leeway``); returns the expiry."""
    ts = now.timestamp()
    exp = _number(claims, "exp")
    if exp is None:
        raise InvalidJwtSvid("missing_exp")
    if ts >= exp + leeway:
        raise InvalidJwtSvid("expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and ts + leeway < nbf:
        raise InvalidJwtSvid("not_yet_valid")
    iat = _number(claims, "iat")
    if iat is not None and ts + leeway < iat:
        raise InvalidJwtSvid("issued_in_future")
    try:
        return dt.datetime.fromtimestamp(exp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidJwtSvid("bad_exp") from exc


@dataclass(frozen=True, slots=True)
class Unverified:
    """A JWT's header fields and claims before its signature is checked: routing only."""

    alg: str
    kid: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def read_unverified(
    token: str, algorithms: Iterable[str], types: Iterable[str] | None = None
) -> Unverified:
    """Parse ``token`` without verifying it; refuse a header no verifier of ours accepts.

    In order: ``malformed``, ``alg_not_allowed`` (not in ``algorithms``),
    ``crit_header``, ``bad_typ`` (when ``types`` is given and ``typ`` is
    present but not in it), ``missing_kid``.
    """
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidJwtSvid("malformed") from exc
    if not isinstance(claims, dict):
        raise InvalidJwtSvid("malformed")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidJwtSvid("alg_not_allowed", str(alg)[:20])
    if "crit" in header:
        raise InvalidJwtSvid("crit_header")
    typ = header.get("typ")
    if types is not None and typ is not None and typ not in types:
        raise InvalidJwtSvid("bad_typ", str(typ)[:40])
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidJwtSvid("missing_kid")
    return Unverified(alg, kid, header, claims)


def _header_and_subject(token: str, rules: JwtSvidRules) -> tuple[str, str, SpiffeId]:
    if not token:
        raise InvalidJwtSvid("malformed")
    if len(token) > rules.max_token_bytes:
        raise InvalidJwtSvid("oversized")
    unverified = read_unverified(token, rules.algorithms, TYPES)
    sub = unverified.claims.get("sub")
    if not isinstance(sub, str):
        raise InvalidJwtSvid("bad_subject", "no sub")
    try:
        spiffe_id = SpiffeId.parse(sub)
    except InvalidSpiffeId as exc:
        raise InvalidJwtSvid("bad_subject", exc.reason) from exc
    return unverified.alg, unverified.kid, spiffe_id


def decode_signed(
    token: str,
    key: PublicKey | Jwk,
    alg: str,
    audiences: Iterable[str] | None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` once its signature with ``key`` under ``alg`` verifies.

    ``exp``, ``aud`` and ``sub`` (and ``iss`` when ``issuer`` is given) are
    required; ``aud`` must hold one of ``audiences`` unless that is ``None``;
    times are not checked here (:func:`check_times`). The one mapping of
    PyJWT's errors to reason codes, for JWT-SVIDs and end-user tokens alike.
    """
    if isinstance(key, Jwk):
        if key.alg is not None and key.alg != alg:
            raise InvalidJwtSvid("alg_key_mismatch")
        key = key.key
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=sorted(audiences) if audiences is not None else None,
            issuer=issuer,
            options={
                "verify_aud": audiences is not None,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_iss": issuer is not None,
                "require": ["exp", "aud", "sub"] + (["iss"] if issuer is not None else []),
            },
        )
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidJwtSvid(f"missing_{exc.claim}") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidJwtSvid("wrong_audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidJwtSvid("wrong_issuer") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidJwtSvid("bad_signature") from exc
    except (jwt.InvalidAlgorithmError, jwt.InvalidKeyError) as exc:
        raise InvalidJwtSvid("alg_key_mismatch") from exc
    except jwt.PyJWTError as exc:
        raise InvalidJwtSvid("invalid", type(exc).__name__) from exc
    except (ValueError, TypeError) as exc:
        raise InvalidJwtSvid("invalid", type(exc).__name__) from exc
    return claims


def validate_jwt_svid(
    token: str,
    keys: KeyLookup,
    audiences: Iterable[str] | None,
    now: dt.datetime,
    rules: JwtSvidRules = JwtSvidRules(),
) -> JwtSvid:
    """Validate ``token`` for one of ``audiences``; see the module docstring for the order.

    ``audiences=None``: ``aud`` must be present, and the caller checks it.
    """
    alg, kid, spiffe_id = _header_and_subject(token, rules)
    authorities = keys(spiffe_id.trust_domain)
    if authorities is None:
        raise InvalidJwtSvid("foreign_trust_domain", spiffe_id.trust_domain.name)
    key = authorities.get(kid)
    if key is None:
        raise InvalidJwtSvid("unknown_kid", kid[:100])
    claims = decode_signed(token, key, alg, audiences)
    expires = check_times(claims, now, rules.leeway_seconds)
    return JwtSvid(spiffe_id, claims, expires, kid)
