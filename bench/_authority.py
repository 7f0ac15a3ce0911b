"""A small signing authority in-process: an :class:`IdentitySource` for agent tests.

It signs with the CA's own code: the root and the signing CAs come from
:mod:`ca.authority`'s builders, X.509-SVIDs and JWT-SVIDs from
:mod:`ca.issuance` (each checked as the CA checks what it issues), so what the
agent serves has the profile ``meshward ca`` issues. Its trust bundle holds
only the root (the signing CA travels in each SVID's chain).

``down`` makes it behave like an unreachable CA; ``evicted`` like a CA that
refuses the agent (403 on every call); ``rotate`` replaces its root, signing
CA and JWT key (the bundle changes); ``activate_signer`` starts signing with a
new signing CA under the same root (only the bundle's sequence changes).
Tests that need the real ``meshward ca serve`` use it instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import CaRejected, CaUnavailable
from agent.model import Bundle, Entry, HeldSvid
from agent.source import JwtSvidToken
from ca.authority import Slot, build_root, make_slot
from ca.issuance import issue_jwt_svid, issue_x509_svid, parse_csr
from ca.keystore import PrivateKey
from meshward.clock import Clock
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle

__all__ = ["LocalAuthority"]

ROOT_TTL = dt.timedelta(days=30)
SIGNING_CA_TTL = dt.timedelta(days=7)
JWT_TTL = dt.timedelta(minutes=5)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class LocalAuthority:
    def __init__(
        self, clock: Clock, trust_domain: str = "example.org", ttl: int = 3600, backdate: int = 30
    ) -> None:
        self.clock = clock
        self.trust_domain = TrustDomain(trust_domain)
        self.ttl = ttl
        self.backdate = backdate
        self.entries: list[Entry] = []
        self.down = False
        self.evicted = False
        self.sequence = 1
        self.refuse: set[str] = set()
        self.issued = 0
        self.calls = 0
        self.rotate()

    def rotate(self) -> None:
        """A new root, signing CA and JWT key: a new bundle."""
        self.root_key: PrivateKey = _key()
        self.root = build_root(
            self.trust_domain, self.root_key, self.clock.now(), ROOT_TTL, self._serial()
        )
        self.slot = self._new_slot(slot_id=1, jwt_key=_key())
        self.sequence += 1

    def activate_signer(self) -> None:
        """Sign from now on with a new signing CA under the same root (same JWT key)."""
        self.slot = self._new_slot(self.slot.id + 1, self.slot.jwt_key)
        self.sequence += 1

    def _new_slot(self, slot_id: int, jwt_key: PrivateKey) -> Slot:
        now = self.clock.now()
        return make_slot(
            slot_id, self.trust_domain, self.root, self.root_key, _key(), jwt_key,
            now, SIGNING_CA_TTL, self._serial(),
        )  # fmt: skip

    @staticmethod
    def _serial() -> int:
        return x509.random_serial_number()

    @property
    def signer(self) -> x509.Certificate:
        """The signing CA that issues now (what follows the leaf in a chain)."""
        return self.slot.ca_cert

    @property
    def jwt_key(self) -> PrivateKey:
        return self.slot.jwt_key

    @property
    def kid(self) -> str:
        return self.slot.jwt_kid

    def bundle(self) -> Bundle:
        return Bundle(
            SpiffeBundle(
                self.trust_domain,
                x509_authorities=(self.root,),
                jwt_authorities={self.kid: self.jwt_key.public_key()},
                sequence=self.sequence,
            )
        )

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise CaUnavailable("connection refused")
        if self.evicted:
            raise CaRejected("agent evicted", 403, "agent_evicted")

    async def fetch_bundle(self) -> Bundle:
        self._check()
        return self.bundle()

    async def fetch_entries(self) -> Sequence[Entry]:
        self._check()
        return list(self.entries)

    async def sign_x509(
        self, entry: Entry, csr: x509.CertificateSigningRequest, current: HeldSvid | None
    ) -> Sequence[x509.Certificate]:
        self._check()
        if entry.entry_id in self.refuse:
            raise CaRejected("not authorized", 403)
        issued = issue_x509_svid(
            parse_csr(csr.public_bytes(serialization.Encoding.PEM)),
            entry.spiffe_id,
            self.slot,
            (self.signer,),
            self.clock.now(),
            dt.timedelta(seconds=entry.ttl_seconds or self.ttl),
            self._serial,
            backdate=dt.timedelta(seconds=self.backdate),
        )
        self.issued += 1
        return list(issued.chain)

    async def sign_jwt(self, svid: HeldSvid, audience: Sequence[str]) -> JwtSvidToken:
        self._check()
        issued = issue_jwt_svid(svid.spiffe_id, audience, self.slot, self.clock.now(), JWT_TTL)
        return JwtSvidToken(issued.token, issued.expires_at)

    async def aclose(self) -> None:
        return None
