"""What the agent holds: registration entries, SVIDs, the trust bundle (values, no I/O).

Wire encodings (DER, PEM, JWKS) are computed once, when a value is built, so
serving a stream never re-encodes keys or certificates.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from meshward.spiffe import SpiffeId, TrustDomain

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


def _jwks(keys: Mapping[str, PublicKeyTypes]) -> bytes:
    out = []
    for kid in sorted(keys):
        key = keys[kid]
        if isinstance(key, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        elif isinstance(key, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        else:
            continue  # not a JWT-SVID algorithm; validation refuses it anyway
        jwk.update(kid=kid, use="jwt-svid")
        out.append(jwk)
    return json.dumps({"keys": out}, separators=(",", ":"), sort_keys=True).encode()


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

    def valid_at(self, now: dt.datetime) -> bool:
        return self.not_before <= now < self.not_after


@dataclass(frozen=True, slots=True)
class Bundle:
    """The trust bundle of one trust domain, as the agent serves it.

    ``jwt_jwks`` is the JWT part as a JWKS document (every key with its ``kid``),
    the form the Workload API's ``FetchJWTBundles`` carries.
    """

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...]
    jwt_authorities: Mapping[str, PublicKeyTypes]
    x509_der: bytes = field(repr=False, default=b"")
    x509_pem: bytes = field(repr=False, default=b"")
    jwt_jwks: bytes = field(repr=False, default=b"")

    def __post_init__(self) -> None:
        object.__setattr__(self, "x509_authorities", tuple(self.x509_authorities))
        object.__setattr__(self, "jwt_authorities", MappingProxyType(dict(self.jwt_authorities)))
        object.__setattr__(self, "x509_der", _der(self.x509_authorities))
        object.__setattr__(self, "x509_pem", _pem(self.x509_authorities))
        object.__setattr__(self, "jwt_jwks", _jwks(self.jwt_authorities))

    def same_keys(self, other: Bundle | None) -> bool:
        """Whether ``other`` trusts exactly the same authorities."""
        return (
            other is not None
            and self.trust_domain == other.trust_domain
            and self.x509_der == other.x509_der
            and set(self.jwt_authorities) == set(other.jwt_authorities)
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the agent serves at one instant; ``version`` grows on every change."""

    version: int
    bundle: Bundle | None
    svids: tuple[HeldSvid, ...] = ()

    def svids_for(self, workload_selectors: frozenset[str]) -> tuple[HeldSvid, ...]:
        """The SVIDs whose entries the workload matches, in a stable order."""
        return tuple(s for s in self.svids if s.entry.matches(workload_selectors))

    def svid_by_id(self, spiffe_id: str) -> HeldSvid | None:
        for svid in self.svids:
            if str(svid.spiffe_id) == spiffe_id:
                return svid
        return None
