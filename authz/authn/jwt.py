"""Bearer tokens: JWT-SVIDs and OIDC end-user tokens, verified without I/O.

Checks, in order, each failure an :class:`InvalidToken` with a ``reason``:
size (``max_token_bytes``), header (``alg`` asymmetric and allowed for the
issuer, ``kid`` present, no ``crit``, ``typ`` as the JWT-SVID spec allows),
issuer routing (a configured OIDC ``iss``, else a ``spiffe://`` ``sub`` of a
trust domain in the bundle), signature with the ``kid``'s key, ``aud``, then
``exp``/``nbf``/``iat`` against the injected time with a leeway of at most 60 s.
JWT-SVIDs are checked by :func:`meshward.jwt_svid.validate_jwt_svid`, the
validator the CA and the node agent use too.

``aud``: an OIDC token's must hold one of its issuer's configured audiences. A
JWT-SVID's is only required and kept (:attr:`VerifiedToken.audiences`): which
audience it needs depends on the request's destination, so it is checked per
request by :func:`authz.authn.audience.check_audience`, never here.

Verified tokens are cached (by SHA-256) until they expire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.authn.audience import token_audiences
from authz.authn.jwks import ASYMMETRIC_ALGORITHMS, Jwk, KeySource
from authz.authn.trust import TrustBundles, TrustSource
from authz.engine.model import AuthMethod, EntityUid, Identity, issuer_group
from authz.errors import InvalidToken, UnknownKey
from meshward.jwt_svid import ALGORITHMS as JWT_SVID_ALGORITHMS
from meshward.jwt_svid import (
    InvalidJwtSvid,
    JwtSvidRules,
    check_times,
    decode_signed,
    read_unverified,
    validate_jwt_svid,
)
from meshward.spiffe import SpiffeId, TrustDomain

__all__ = [
    "DEFAULT_MAX_TOKEN_BYTES",
    "JwtPolicy",
    "JwtVerifier",
    "OidcIssuer",
    "VerifiedToken",
    "bearer_token",
]

DEFAULT_MAX_TOKEN_BYTES = 8 * 1024
MAX_LEEWAY_SECONDS = 60
_OIDC_TYPES = frozenset({"JWT", "JOSE", "at+jwt", "application/at+jwt"})
_I64 = 2**63


@dataclass(frozen=True, slots=True)
class OidcIssuer:
    """An end-user token issuer we accept."""

    issuer: str
    audiences: frozenset[str]
    keys: KeySource
    algorithms: frozenset[str] = frozenset({"RS256", "ES256"})
    groups_claim: str = "groups"

    def __post_init__(self) -> None:
        bad = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if bad:
            raise ValueError(f"issuer {self.issuer}: not asymmetric algorithms: {sorted(bad)}")
        if not self.audiences:
            raise ValueError(f"issuer {self.issuer}: at least one audience is required")
        if "|" in self.issuer:
            # Users and groups are "<issuer>|<name>": the first "|" must end the issuer.
            raise ValueError(f"issuer {self.issuer}: must not contain '|'")


@dataclass(frozen=True, slots=True)
class JwtPolicy:
    """Limits that apply to every token."""

    svid_algorithms: frozenset[str] = frozenset({"ES256", "ES384", "RS256", "PS256"})
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    leeway_seconds: int = 30
    cache_entries: int = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"JWT leeway must be 0..{MAX_LEEWAY_SECONDS} s")
        bad = set(self.svid_algorithms) - JWT_SVID_ALGORITHMS
        if bad:
            raise ValueError(f"JWT-SVID algorithms must be asymmetric: {sorted(bad)}")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every check: who it names and its claims for policies."""

    identity: Identity
    claims: Mapping[str, Any] = field(default_factory=dict)
    # A JWT-SVID's ``aud`` values, to be bound to the request's destination;
    # ``None`` for OIDC tokens (checked against their issuer's audiences).
    audiences: frozenset[str] | None = None

    @property
    def expires_at(self) -> dt.datetime:
        if self.identity.expires_at is None:  # never: exp is required
            raise InvalidToken("missing_exp")
        return self.identity.expires_at


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def cedar_safe(value: Any, depth: int = 0) -> Any:
    """Claims as Cedar can hold them: no floats, nulls or huge integers; str keys."""
    if depth > 8:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_I64 <= value < _I64 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, list):
        items = [cedar_safe(v, depth + 1) for v in value]
        return [v for v in items if v is not None]
    if isinstance(value, Mapping):
        out = {str(k): cedar_safe(v, depth + 1) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    return None


def _groups(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str) and g]
    return []


class JwtVerifier:
    """Verifies bearer tokens; the only state is the verified-token cache."""

    def __init__(
        self,
        policy: JwtPolicy,
        bundles: TrustSource,
        issuers: Iterable[OidcIssuer] = (),
    ) -> None:
        self.policy = policy
        self._svid_rules = JwtSvidRules(
            algorithms=policy.svid_algorithms,
            max_token_bytes=policy.max_token_bytes,
            leeway_seconds=policy.leeway_seconds,
        )
        self.bundles = bundles
        self.issuers = {i.issuer: i for i in issuers}
        self._cache: OrderedDict[bytes, VerifiedToken] = OrderedDict()
        self._cached_under: TrustBundles | None = None

    # -- the async edge: one refresh of the issuer's keys on an unknown kid --
    async def authenticate(self, token: str, now: dt.datetime) -> VerifiedToken:
        try:
            return self.verify(token, now)
        except UnknownKey as exc:
            issuer = self.issuers.get(exc.issuer)
            if issuer is None or not await issuer.keys.refresh():
                raise
        return self.verify(token, now)

    # -- pure verification --
    def verify(self, token: str, now: dt.datetime) -> VerifiedToken:
        if len(token) > self.policy.max_token_bytes:
            raise InvalidToken("oversized")
        bundles = self.bundles.current()
        if bundles is not self._cached_under:
            # A new trust bundle may have retired a key: verify everything afresh.
            self._cache.clear()
            self._cached_under = bundles
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        hit = self._cache.get(digest)
        if hit is not None:
            if now.timestamp() < hit.expires_at.timestamp() + self.policy.leeway_seconds:
                self._cache.move_to_end(digest)
                return hit
            del self._cache[digest]
        verified = self._verify(token, now)
        self._cache[digest] = verified
        if len(self._cache) > self.policy.cache_entries:
            self._cache.popitem(last=False)
        return verified

    def _verify(self, token: str, now: dt.datetime) -> VerifiedToken:
        try:
            # The header rules every verifier shares; typ is the issuer kind's own (below).
            read = read_unverified(token, ASYMMETRIC_ALGORITHMS)
        except InvalidJwtSvid as exc:
            raise InvalidToken(exc.reason, exc.detail) from exc
        header, unverified, kid, alg = read.header, read.claims, read.kid, read.alg
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is not None:
            return self._verify_oidc(token, header, issuer, kid, alg, now)
        sub = unverified.get("sub")
        if isinstance(sub, str) and sub.startswith("spiffe://"):
            return self._verify_svid(token, header, sub, kid, alg, now)
        raise InvalidToken("unknown_issuer")

    def _decode(
        self,
        token: str,
        key: Jwk,
        alg: str,
        audiences: Iterable[str],
        issuer: str,
        now: dt.datetime,
    ) -> tuple[dict[str, Any], dt.datetime]:
        try:
            claims = decode_signed(token, key, alg, audiences, issuer)
            # The same time rules for end-user tokens as for JWT-SVIDs.
            return claims, check_times(claims, now, self.policy.leeway_seconds)
        except InvalidJwtSvid as exc:
            raise InvalidToken(exc.reason, exc.detail) from exc

    def _verify_svid(
        self, token: str, header: Mapping[str, Any], sub: str, kid: str, alg: str, now: dt.datetime
    ) -> VerifiedToken:
        # The JWT-SVID rules live in one place (meshward.jwt_svid), shared with the CA and agent.
        del header, kid, alg  # read again, and checked, by the shared validator

        def keys(trust_domain: TrustDomain) -> Mapping[str, Any] | None:
            bundle = self.bundles.current().get(trust_domain)
            return bundle.jwt_keys if bundle is not None else None

        try:
            # aud is required but bound to the destination per request (authz.authn.audience).
            svid = validate_jwt_svid(token, keys, None, now, self._svid_rules)
        except InvalidJwtSvid as exc:
            if exc.reason == "unknown_kid":
                issuer = str(SpiffeId.parse(sub).trust_domain.id)  # parsed by the validator
                raise UnknownKey(issuer, exc.detail) from exc
            raise InvalidToken(exc.reason, exc.detail) from exc
        identity = Identity(
            EntityUid("Workload", str(svid.spiffe_id)),
            method=AuthMethod.JWT_SVID,
            expires_at=svid.expires_at,
            attributes={"trust_domain": svid.spiffe_id.trust_domain.name},
        )
        return VerifiedToken(identity, cedar_safe(svid.claims), token_audiences(svid.claims["aud"]))

    def _verify_oidc(
        self,
        token: str,
        header: Mapping[str, Any],
        issuer: OidcIssuer,
        kid: str,
        alg: str,
        now: dt.datetime,
    ) -> VerifiedToken:
        typ = header.get("typ")
        if typ is not None and typ not in _OIDC_TYPES:
            raise InvalidToken("bad_typ")
        if alg not in issuer.algorithms:
            raise InvalidToken("alg_not_allowed", alg)
        key = issuer.keys.current().get(kid)
        if key is None:
            raise UnknownKey(issuer.issuer, kid)
        claims, expires = self._decode(token, key, alg, issuer.audiences, issuer.issuer, now)
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > 1024 or not sub.isprintable():
            # The principal travels upstream in a header: no control characters.
            raise InvalidToken("bad_subject")
        parents = tuple(
            issuer_group(issuer.issuer, g) for g in _groups(claims.get(issuer.groups_claim))
        )
        identity = Identity(
            EntityUid("User", f"{issuer.issuer}|{sub}"),
            parents=parents,
            method=AuthMethod.OIDC,
            expires_at=expires,
            attributes={"issuer": issuer.issuer, "subject": sub},
        )
        return VerifiedToken(identity, cedar_safe(claims))
