"""The Workload API's ``ValidateJWTSVID``: the shared JWT-SVID rules against the agent's bundle.

Every rule (algorithms, ``typ``, size, ``kid``, ``aud``, ``exp``) lives in
:mod:`meshward.jwt_svid`, the validator the CA and the PDP use too; this
module only binds it to the agent's one trust domain and error tree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from agent.errors import AgentError
from agent.model import Bundle
from meshward import jwt_svid
from meshward.jwk import Jwk, PublicKey
from meshward.spiffe import SpiffeId, TrustDomain

__all__ = ["InvalidJwtSvid", "validate_jwt_svid"]


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

    def keys(trust_domain: TrustDomain) -> Mapping[str, PublicKey | Jwk] | None:
        return bundle.jwt_authorities if trust_domain == bundle.trust_domain else None

    try:
        svid = jwt_svid.validate_jwt_svid(token, keys, [audience], now)
    except jwt_svid.InvalidJwtSvid as exc:
        raise InvalidJwtSvid(exc.reason) from exc
    return svid.spiffe_id, svid.claims
