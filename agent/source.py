"""Where the agent gets identities from: the CA, behind a small protocol.

:class:`~agent.ca_client.CaClient` speaks to ``meshward ca serve`` over
HTTPS; anything else that can sign (a test authority in-process, an upstream
SPIRE-like server) can stand in as long as it satisfies :class:`IdentitySource`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography import x509

from agent.model import Bundle, Entry, HeldSvid

__all__ = ["IdentitySource", "JwtSvidToken"]


@dataclass(frozen=True, slots=True)
class JwtSvidToken:
    """A JWT-SVID as the CA issued it."""

    token: str
    expires_at: dt.datetime


@runtime_checkable
class IdentitySource(Protocol):
    """What the agent needs from a CA. Errors are :class:`agent.errors.CaRequestFailed`."""

    async def fetch_bundle(self) -> Bundle:
        """The current trust bundle of the agent's trust domain."""
        ...

    async def fetch_entries(self) -> Sequence[Entry]:
        """The registration entries that apply to this node."""
        ...

    async def sign_x509(
        self, entry: Entry, csr: x509.CertificateSigningRequest, current: HeldSvid | None
    ) -> Sequence[x509.Certificate]:
        """An X.509-SVID for ``entry`` over ``csr`` (chain, leaf first).

        ``current`` is the SVID held for the entry, when still valid, so the
        source can renew with it instead of attesting again.
        """
        ...

    async def sign_jwt(self, svid: HeldSvid, audience: Sequence[str]) -> JwtSvidToken:
        """A JWT-SVID for the identity of ``svid``, for ``audience``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
