"""Trust anchors per trust domain: X.509 authorities and JWT-SVID keys.

A :class:`TrustBundles` value is what authentication verifies against. It is
built once at start (from ``--trust-bundle``) and passed in; nothing here
reads files except :func:`load_trust_bundles`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509

from authz.authn.errors import KeySourceError
from meshward.spiffe import SpiffeError, TrustDomain
from meshward.spiffe_bundle import load_bundle

__all__ = ["TrustBundles", "TrustDomainBundle", "load_trust_bundles"]


@dataclass(frozen=True, slots=True)
class TrustDomainBundle:
    """One trust domain's X.509 authorities and JWT-SVID keys (``kid`` -> public key)."""

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()
    jwt_keys: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "x509_authorities", tuple(self.x509_authorities))
        object.__setattr__(self, "jwt_keys", MappingProxyType(dict(self.jwt_keys)))


@dataclass(frozen=True, slots=True)
class TrustBundles:
    """The trust domains we accept credentials from."""

    bundles: Mapping[TrustDomain, TrustDomainBundle] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundles", MappingProxyType(dict(self.bundles)))

    @classmethod
    def of(cls, *bundles: TrustDomainBundle) -> TrustBundles:
        return cls({b.trust_domain: b for b in bundles})

    def get(self, trust_domain: TrustDomain) -> TrustDomainBundle | None:
        return self.bundles.get(trust_domain)

    def __bool__(self) -> bool:
        return bool(self.bundles)


def load_trust_bundles(path: Path, trust_domain: str | None = None) -> TrustBundles:
    """Read a SPIFFE bundle (JWK Set document or PEM) with :mod:`meshward.spiffe_bundle`.

    The trust domain is ``trust_domain`` when given, else the SPIFFE ID in the
    X.509 authorities' URI SAN.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeySourceError("bundle_unreadable", f"{path}: {exc.strerror}") from exc
    try:
        td = TrustDomain.parse(trust_domain) if trust_domain else None
        bundle = load_bundle(data, td)
    except SpiffeError as exc:
        reason = getattr(exc, "reason", "invalid")
        raise KeySourceError(f"bundle_{reason}", str(path)) from exc
    return TrustBundles.of(
        TrustDomainBundle(bundle.trust_domain, bundle.x509_authorities, bundle.jwt_authorities)
    )
