"""What the agent holds: registration entries, SVIDs, the trust bundle (values, no I/O).

Wire encodings (DER, PEM, JWKS) are computed once, when a value is built, so
serving a stream never re-encodes keys or certificates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshward.spiffe import SpiffeId, TrustDomain
from meshward.spiffe_bundle import PublicKey, SpiffeBundle

__all__ = ["Bundle", "Entry", "HeldSvid", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A registration entry that applies to this node.

    A workload is entitled to it when every one of ``selectors`` is among the
    selectors discovered for the workload (``unix:uid:1000``, ``unix:gid:…``).
    An entry with no selectors matches nobody.
    """

    entry_id: str
    spiffe_id: SpiffeId
    selectors: frozenset[str]
    ttl_seconds: int | None = None
    hint: str = ""

    def matches(self, workload_selectors: frozenset[str]) -> bool:
        return bool(self.selectors) and self.selectors <= workload_selectors


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _der(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)


@dataclass(frozen=True, slots=True)
class HeldSvid:
    """An X.509-SVID the agent holds for one entry, with its private key."""

    entry: Entry
    chain: tuple[x509.Certificate, ...]
    key: ec.EllipticCurvePrivateKey
    chain_der: bytes = field(repr=False)
    chain_pem: bytes = field(repr=False)
    key_der: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)

    @classmethod
    def create(
        cls, entry: Entry, chain: Iterable[x509.Certificate], key: ec.EllipticCurvePrivateKey
    ) -> HeldSvid:
        certs = tuple(chain)
        if not certs:
            raise ValueError("an SVID needs at least its leaf certificate")
        pkcs8 = serialization.PrivateFormat.PKCS8
        none = serialization.NoEncryption()
        return cls(
            entry=entry,
            chain=certs,
            key=key,
            chain_der=_der(certs),
            chain_pem=_pem(certs),
            key_der=key.private_bytes(serialization.Encoding.DER, pkcs8, none),
            key_pem=key.private_bytes(serialization.Encoding.PEM, pkcs8, none),
        )

    @property
    def spiffe_id(self) -> SpiffeId:
        return self.entry.spiffe_id

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    @property
    def issuer_id(self) -> bytes:
        """Which CA signed the leaf: its authority key identifier, else the issuer name."""
        try:
            aki = self.leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        except x509.ExtensionNotFound:
            return self.leaf.issuer.public_bytes()
        return aki.value.key_identifier or self.leaf.issuer.public_bytes()

    def valid_at(self, now: dt.datetime) -> bool:
        return self.not_before <= now < self.not_after


@dataclass(frozen=True, slots=True)
class Bundle:
    """The trust bundle of the agent's trust domain, with its wire encodings.

    ``document`` is the bundle as the CA published it; ``x509_der`` (concatenated
    DER, as the Workload API carries it), ``x509_pem`` and ``jwt_jwks`` (the JWT
    authorities only, each with its ``kid``, as ``FetchJWTBundles`` carries them)
    are computed once.
    """

    document: SpiffeBundle
    x509_der: bytes = field(init=False, repr=False)
    x509_pem: bytes = field(init=False, repr=False)
    jwt_jwks: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        doc = self.document
        object.__setattr__(self, "x509_der", _der(doc.x509_authorities))
        object.__setattr__(self, "x509_pem", doc.to_pem())
        jwt_only = SpiffeBundle(doc.trust_domain, (), doc.jwt_authorities)
        object.__setattr__(self, "jwt_jwks", jwt_only.to_json())

    @property
    def trust_domain(self) -> TrustDomain:
        return self.document.trust_domain

    @property
    def x509_authorities(self) -> tuple[x509.Certificate, ...]:
        return self.document.x509_authorities

    @property
    def jwt_authorities(self) -> Mapping[str, PublicKey]:
        return self.document.jwt_authorities

    def same_keys(self, other: Bundle | None) -> bool:
        """Whether ``other`` trusts exactly the same authorities."""
        return (
            other is not None
            and self.trust_domain == other.trust_domain
            and self.x509_der == other.x509_der
            and self.jwt_jwks == other.jwt_jwks
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the agent serves at one instant; ``version`` grows on every change."""

    version: int
    bundle: Bundle | None
    svids: tuple[HeldSvid, ...] = ()
    partial: bool = False  # published mid-pass: SVIDs still to come may be missing

    def svids_for(self, workload_selectors: frozenset[str]) -> tuple[HeldSvid, ...]:
        """The SVIDs whose entries the workload matches, in a stable order."""
        return tuple(s for s in self.svids if s.entry.matches(workload_selectors))

    def svid_by_id(self, spiffe_id: str) -> HeldSvid | None:
        for svid in self.svids:
            if str(svid.spiffe_id) == spiffe_id:
                return svid
        return None
