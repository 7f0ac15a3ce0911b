"""Trust anchors per trust domain: X.509 authorities and JWT-SVID keys.

A :class:`TrustBundles` value is what authentication verifies against. It is
built once at start (from ``--trust-bundle``) and passed in; nothing here
reads files except :func:`load_trust_bundles`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509

from authz.authn.errors import KeySourceError
from meshward import spiffe
from meshward.spiffe import InvalidSpiffeId, SpiffeId, TrustDomain

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


def _trust_domain_of(certs: Iterable[x509.Certificate]) -> TrustDomain | None:
    for cert in certs:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            continue
        for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
            try:
                return SpiffeId.parse(uri).trust_domain
            except InvalidSpiffeId:
                continue
    return None


def load_trust_bundles(path: Path, trust_domain: str | None = None) -> TrustBundles:
    """Read a PEM bundle of X.509 authorities for one trust domain.

    The trust domain is ``trust_domain`` when given, else the SPIFFE ID in the
    authorities' URI SAN. A SPIFFE bundle document (JWKS) is read with the
    shared parser in :mod:`meshward.spiffe`.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeySourceError("bundle_unreadable", f"{path}: {exc.strerror}") from exc
    if data.lstrip().startswith(b"{"):
        return _from_document(data, trust_domain)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeySourceError("bundle_invalid", f"{path}: not a PEM certificate bundle") from exc
    td = TrustDomain.parse(trust_domain) if trust_domain else _trust_domain_of(certs)
    if td is None:
        raise KeySourceError(
            "bundle_no_trust_domain", f"{path}: set pdp.trust_domain, the PEM names none"
        )
    return TrustBundles.of(TrustDomainBundle(td, tuple(certs)))


def _from_document(data: bytes, trust_domain: str | None) -> TrustBundles:
    parse = getattr(spiffe, "parse_bundle", None)
    if parse is None:
        raise KeySourceError("bundle_format_unsupported", "JWKS bundles need meshward.spiffe")
    try:
        doc = parse(data, trust_domain) if trust_domain else parse(data)
    except (ValueError, TypeError) as exc:
        raise KeySourceError("bundle_invalid", "not a SPIFFE bundle document") from exc
    return TrustBundles.of(
        TrustDomainBundle(
            doc.trust_domain,
            tuple(doc.x509_authorities),
            dict(doc.jwt_authorities),
        )
    )
