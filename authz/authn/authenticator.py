"""One identity per request, from the peer facts and the ``Authorization`` header.

- a bearer token, when present, must verify: its identity is the principal
  (a JWT-SVID's workload or an OIDC user with groups);
- else a trusted mTLS peer is the principal (``Workload::"spiffe://…"``);
- else the caller is ``Anonymous::"anonymous"``.

The peer is authenticated by :class:`~authz.authn.peermemo.PeerMemo`: once per
connection facts and trust bundle, its validity still checked on every request.
The mTLS peer, when there is one, is always reported too (``context.peer``), so
a policy can ask for "user X through workload Y". Any credential that is
present but wrong raises :class:`~authz.errors.AuthnError`: the caller is
unauthenticated, never silently anonymous.

A JWT-SVID is also bound to where it is used: once the request's destination
is known, :meth:`Authenticator.bind` refuses a token whose ``aud`` does not
name it (:mod:`authz.authn.audience`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

from authz.authn.audience import AudiencePolicy, check_audience
from authz.authn.jwt import JwtVerifier, bearer_token
from authz.authn.peer import Peer, PeerFacts, PeerPolicy
from authz.authn.peermemo import PeerMemo
from authz.authn.trust import TrustBundles, TrustSource
from authz.engine.model import ANONYMOUS, AuthMethod, EntityUid, Identity
from authz.errors import InvalidToken
from meshward.clock import Clock
from meshward.spiffe import SpiffeId

__all__ = ["Authenticated", "Authenticator"]


class Authenticated(NamedTuple):
    """The caller's identity, the mTLS peer (if any) and the token's claims (if any)."""

    identity: Identity
    peer: Peer | None = None
    claims: Mapping[str, Any] | None = None
    # The JWT-SVID's audiences (``None`` when no JWT-SVID authenticated the caller).
    audiences: frozenset[str] | None = None


class Authenticator:
    """Turns connection facts and headers into :class:`Authenticated`."""

    def __init__(
        self,
        clock: Clock,
        peer_policy: PeerPolicy | None = None,
        bundles: TrustSource | None = None,
        jwt: JwtVerifier | None = None,
        audience: AudiencePolicy | None = None,
    ) -> None:
        self.clock = clock
        self.peer_policy = peer_policy or PeerPolicy()
        self.bundles: TrustSource = bundles if bundles is not None else TrustBundles()
        self.jwt = jwt
        self.audience = audience or AudiencePolicy()
        # A connection's facts repeat on every request: verified once per bundle.
        self.peers = PeerMemo()

    async def authenticate(self, peer: PeerFacts, authorization: str | None) -> Authenticated:
        now = self.clock.now()
        found = self.peers.authenticate(peer, self.peer_policy, self.bundles.current(), now)
        token = bearer_token(authorization)
        if token is not None and self.jwt is not None:
            verified = await self.jwt.authenticate(token, now)
            identity = verified.identity
            if found is not None and found.expires_at is not None:
                # Nothing derived from this request may outlive either credential.
                expires = min(found.expires_at, verified.expires_at)
                identity = dataclasses.replace(identity, expires_at=expires)
            return Authenticated(identity, found, verified.claims, verified.audiences)
        if token is not None:
            # A bearer token we have no way to verify is a failed credential.
            raise InvalidToken("tokens_not_configured")
        if found is not None:
            return Authenticated(_workload(found.spiffe_id, found.expires_at), found)
        return Authenticated(ANONYMOUS)

    def bind(self, who: Authenticated, destination: str) -> None:
        """Refuse a JWT-SVID whose ``aud`` does not name ``destination`` (``InvalidToken``)."""
        if who.audiences is not None:
            check_audience(who.audiences, destination, self.audience)


@functools.lru_cache(maxsize=4096)
def _workload(spiffe_id: SpiffeId, expires_at: dt.datetime | None) -> Identity:
    """The (immutable) identity of an mTLS workload; the same few recur constantly."""
    return Identity(
        EntityUid("Workload", str(spiffe_id)),
        method=AuthMethod.MTLS,
        expires_at=expires_at,
        attributes={"trust_domain": spiffe_id.trust_domain.name},
    )
