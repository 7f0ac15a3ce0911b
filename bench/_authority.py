"""A small signing authority in-process: an :class:`IdentitySource` for agent tests.

It really signs (ECDSA P-256 root, X.509-SVIDs with one URI SAN, ES256
JWT-SVIDs with a ``kid``), so py-spiffe and Envoy-side clients can verify what
the agent serves. ``down`` makes it behave like an unreachable CA; ``evicted`` like a CA
that refuses the agent (403 on every call); ``rotate`` replaces its root and
JWT key (the bundle changes); ``activate_signer`` starts signing with a new
intermediate under the same root (only the bundle's sequence changes). Tests that need the real
``meshward ca serve`` use it instead.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import CaRejected, CaUnavailable
from agent.model import Bundle, Entry, HeldSvid
from agent.source import JwtSvidToken
from meshward.clock import Clock
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle

__all__ = ["LocalAuthority"]


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
        now = self.clock.now()
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"root {secrets.token_hex(4)}")])
        self.root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(str(self.trust_domain.id))]
                ),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA256())
        )
        self.signer_key, self.signer = self.root_key, self.root
        self.jwt_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = secrets.token_hex(8)
        self.sequence += 1

    def activate_signer(self) -> None:
        """Sign from now on with a new intermediate CA under the same root."""
        now = self.clock.now()
        self.signer_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ca {secrets.token_hex(4)}")])
        self.signer = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(self.root.subject)
            .public_key(self.signer_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA256())
        )
        self.sequence += 1

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
        now = self.clock.now()
        ttl = entry.ttl_seconds or self.ttl
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE")]))
            .issuer_name(self.signer.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=self.backdate))
            .not_valid_after(now + dt.timedelta(seconds=ttl))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(entry.spiffe_id))]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.signer_key.public_key()),
                critical=False,
            )
            .sign(self.signer_key, hashes.SHA256())
        )
        self.issued += 1
        return [leaf] if self.signer is self.root else [leaf, self.signer]

    async def sign_jwt(self, svid: HeldSvid, audience: Sequence[str]) -> JwtSvidToken:
        self._check()
        now = self.clock.now()
        exp = now + dt.timedelta(minutes=5)
        token = jwt.encode(
            {
                "sub": str(svid.spiffe_id),
                "aud": list(audience),
                "iat": int(now.timestamp()),
                "exp": int(exp.timestamp()),
            },
            self.jwt_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            algorithm="ES256",
            headers={"kid": self.kid, "typ": "JWT"},
        )
        return JwtSvidToken(token, exp)

    async def aclose(self) -> None:
        return None
