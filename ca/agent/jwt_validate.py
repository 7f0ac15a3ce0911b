"""Validate a JWT-SVID against the trust bundle, as the JWT-SVID spec says (pure).

Only asymmetric algorithms; ``kid`` must name a key of the bundle; ``sub`` must
be a SPIFFE ID of the bundle's trust domain; ``aud`` must contain the audience;
``exp`` is required and checked against the injected ``now``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import jwt

from ca.agent.errors import AgentError
from ca.agent.model import Bundle
from meshward.spiffe import InvalidSpiffeId, SpiffeId

__all__ = ["ALLOWED_ALGORITHMS", "InvalidJwtSvid", "MAX_TOKEN_BYTES", "validate_jwt_svid"]

ALLOWED_ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
)
MAX_TOKEN_BYTES = 16 * 1024


class InvalidJwtSvid(AgentError, ValueError):
    """The token is not a valid JWT-SVID for this audience; ``reason`` is a short code."""

    code = "invalid_jwt_svid"

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid JWT-SVID: {reason.replace('_', ' ')}")
        self.reason = reason


def validate_jwt_svid(
    token: str, audience: str, bundle: Bundle, now: dt.datetime
) -> tuple[SpiffeId, Mapping[str, Any]]:
    """Return the token's SPIFFE ID and claims, or raise :class:`InvalidJwtSvid`."""
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise InvalidJwtSvid("bad_size")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidJwtSvid("malformed") from exc
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise InvalidJwtSvid("algorithm_not_allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidJwtSvid("missing_kid")
    key = bundle.jwt_authorities.get(kid)
    if key is None:
        raise InvalidJwtSvid("unknown_kid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=audience,
            # Times are checked below against the injected clock, not PyJWT's.
            options={
                "require": ["exp", "aud", "sub"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise InvalidJwtSvid("wrong_audience") from exc
    except jwt.PyJWTError as exc:
        raise InvalidJwtSvid("invalid_signature_or_claims") from exc
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or now.timestamp() >= exp:
        raise InvalidJwtSvid("expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or now.timestamp() < nbf):
        raise InvalidJwtSvid("not_yet_valid")
    try:
        spiffe_id = SpiffeId.parse(claims["sub"])
    except InvalidSpiffeId as exc:
        raise InvalidJwtSvid("bad_subject") from exc
    if spiffe_id.trust_domain != bundle.trust_domain:
        raise InvalidJwtSvid("foreign_trust_domain")
    return spiffe_id, claims
