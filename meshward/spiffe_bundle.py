"""The SPIFFE bundle of a trust domain, as the Trust Domain and Bundle spec defines it.

A :class:`SpiffeBundle` is a frozen value: the trust domain, its X.509
authorities (CA certificates), its JWT authorities (``kid`` -> public key), the
``spiffe_sequence`` and the ``spiffe_refresh_hint``. It is parsed from and
rendered to the two forms meshward serves:

- the JWK Set document (``GET /v1/bundle``): every key has ``use``;
  ``x509-svid`` keys carry exactly one certificate in ``x5c`` and no ``kid``,
  ``jwt-svid`` keys always carry a ``kid``. When consuming a document, a key
  with an unknown ``use`` or a malformed key is skipped (the spec asks
  consumers to ignore such elements) and counted in ``skipped_keys``; a
  document that is not a JWK Set at all is an error.
- PEM (``bundle.pem``): the X.509 authorities only, one certificate each.

Errors (the tree continues :mod:`meshward.spiffe`)::

    SpiffeError
     └── InvalidBundle      (.reason: a short code)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshward import jwk as _jwk
from meshward.jwk import InvalidJwk, PublicKey, jwk_thumbprint, same_key
from meshward.spiffe import InvalidSpiffeId, SpiffeError, SpiffeId, TrustDomain
from meshward.x509_svid import InvalidSvid, uri_sans

__all__ = [
    "JWT_SVID_USE",
    "X509_SVID_USE",
    "InvalidBundle",
    "PublicKey",
    "SpiffeBundle",
    "jwk_thumbprint",
    "jwk_to_public_key",
    "load_bundle",
    "public_key_to_jwk",
]

X509_SVID_USE = "x509-svid"
JWT_SVID_USE = "jwt-svid"
MAX_DOCUMENT_BYTES = 1 << 20


class InvalidBundle(SpiffeError, ValueError):
    """A bundle document cannot be parsed; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(
            f"invalid SPIFFE bundle: {reason.replace('_', ' ')}" + (f": {detail}" if detail else "")
        )
        self.reason = reason


def jwk_to_public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The public key a JWK describes; :class:`InvalidBundle` if it is malformed."""
    try:
        return _jwk.jwk_to_public_key(jwk)
    except InvalidJwk as exc:
        raise InvalidBundle(exc.reason, exc.detail) from exc


def public_key_to_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members of a public key; :class:`InvalidBundle` for an unsupported one."""
    try:
        return _jwk.public_key_to_jwk(key)
    except InvalidJwk as exc:
        raise InvalidBundle(exc.reason, exc.detail) from exc


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class SpiffeBundle:
    """The trust material of one trust domain (immutable)."""

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()
    jwt_authorities: Mapping[str, PublicKey] = field(default_factory=lambda: MappingProxyType({}))
    sequence: int | None = None
    refresh_hint: int | None = None
    skipped_keys: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise TypeError("trust_domain must be a TrustDomain")
        # Freeze the mapping so the value cannot change under its users.
        object.__setattr__(self, "jwt_authorities", MappingProxyType(dict(self.jwt_authorities)))
        object.__setattr__(self, "x509_authorities", tuple(self.x509_authorities))
        for kid in self.jwt_authorities:
            if not isinstance(kid, str) or not kid:
                raise InvalidBundle("bad_kid", "JWT authority without a key id")
        for name, value in (("sequence", self.sequence), ("refresh_hint", self.refresh_hint)):
            if value is not None and (isinstance(value, bool) or value < 0):
                raise InvalidBundle(f"bad_{name}", str(value))

    def __hash__(self) -> int:
        return hash((self.trust_domain, self.sequence, len(self.x509_authorities)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpiffeBundle):
            return NotImplemented
        if set(self.jwt_authorities) != set(other.jwt_authorities):
            return False
        return (
            self.trust_domain == other.trust_domain
            and self.sequence == other.sequence
            and self.refresh_hint == other.refresh_hint
            and [_cert_der(c) for c in self.x509_authorities]
            == [_cert_der(c) for c in other.x509_authorities]
            and all(
                same_key(k, other.jwt_authorities[kid]) for kid, k in self.jwt_authorities.items()
            )
        )

    # -- JWK Set ------------------------------------------------------------

    def to_jwks(self) -> dict[str, Any]:
        """The bundle as a SPIFFE JWK Set document (a JSON-ready dict)."""
        keys: list[dict[str, Any]] = []
        for cert in self.x509_authorities:
            jwk: dict[str, Any] = {"use": X509_SVID_USE, **public_key_to_jwk(_cert_key(cert))}
            jwk["x5c"] = [base64.b64encode(_cert_der(cert)).decode("ascii")]
            keys.append(jwk)
        for kid, key in self.jwt_authorities.items():
            keys.append({"use": JWT_SVID_USE, "kid": kid, **public_key_to_jwk(key)})
        doc: dict[str, Any] = {"keys": keys}
        if self.sequence is not None:
            doc["spiffe_sequence"] = self.sequence
        if self.refresh_hint is not None:
            doc["spiffe_refresh_hint"] = self.refresh_hint
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_jwks(), indent=2).encode("utf-8")

    @classmethod
    def from_jwks(
        cls, document: bytes | str | Mapping[str, Any], trust_domain: TrustDomain
    ) -> SpiffeBundle:
        """Parse a SPIFFE JWK Set document for ``trust_domain``."""
        doc = _load_json(document) if isinstance(document, bytes | str) else document
        if not isinstance(doc, Mapping):
            raise InvalidBundle("not_an_object")
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, list):
            raise InvalidBundle("missing_keys")
        sequence = _optional_uint(doc, "spiffe_sequence")
        refresh = _optional_uint(doc, "spiffe_refresh_hint")
        certs: list[x509.Certificate] = []
        jwt_keys: dict[str, PublicKey] = {}
        skipped = 0
        for raw in raw_keys:
            try:
                use = raw.get("use") if isinstance(raw, Mapping) else None
                if use == X509_SVID_USE:
                    cert = _parse_x509_jwk(raw)
                    if all(_cert_der(cert) != _cert_der(c) for c in certs):
                        certs.append(cert)
                elif use == JWT_SVID_USE:
                    kid, key = _parse_jwt_jwk(raw)
                    if kid in jwt_keys:
                        raise InvalidBundle("duplicate_kid", kid)
                    jwt_keys[kid] = key
                else:
                    skipped += 1
            except InvalidBundle as exc:
                if exc.reason == "duplicate_kid":
                    raise
                skipped += 1
        return cls(trust_domain, tuple(certs), jwt_keys, sequence, refresh, skipped)

    # -- PEM ----------------------------------------------------------------

    def to_pem(self) -> bytes:
        """The X.509 authorities as concatenated PEM certificates."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.x509_authorities)

    @classmethod
    def from_pem(cls, data: bytes, trust_domain: TrustDomain | None = None) -> SpiffeBundle:
        """Parse PEM CA certificates; the trust domain defaults to the one in their URI SAN."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InvalidBundle("too_large")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidBundle("bad_pem") from exc
        if not certs:
            raise InvalidBundle("empty")
        td = trust_domain or _trust_domain_of(certs)
        return cls(td, tuple(certs))

    # -- helpers ------------------------------------------------------------

    def with_changes(
        self,
        *,
        x509_authorities: tuple[x509.Certificate, ...] | None = None,
        jwt_authorities: Mapping[str, PublicKey] | None = None,
        sequence: int | None = None,
        refresh_hint: int | None = None,
    ) -> SpiffeBundle:
        """A copy with some fields replaced."""
        return SpiffeBundle(
            self.trust_domain,
            self.x509_authorities if x509_authorities is None else x509_authorities,
            self.jwt_authorities if jwt_authorities is None else jwt_authorities,
            self.sequence if sequence is None else sequence,
            self.refresh_hint if refresh_hint is None else refresh_hint,
        )


def load_bundle(data: bytes, trust_domain: TrustDomain | None = None) -> SpiffeBundle:
    """Parse either form: a JWK Set document (JSON) or PEM certificates.

    A JWK Set does not name its trust domain; without ``trust_domain`` it is
    taken from the URI SAN of its X.509 authorities.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidBundle("too_large")
    if data.lstrip().startswith(b"{"):
        doc = _load_json(data)
        td = trust_domain
        if td is None:
            probe = SpiffeBundle.from_jwks(doc, TrustDomain("probe"))
            td = _trust_domain_of(list(probe.x509_authorities))
        return SpiffeBundle.from_jwks(doc, td)
    return SpiffeBundle.from_pem(data, trust_domain)


def _load_json(document: bytes | str) -> Any:
    if len(document) > MAX_DOCUMENT_BYTES:
        raise InvalidBundle("too_large")
    try:
        return json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidBundle("not_json") from exc


def _optional_uint(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidBundle(f"bad_{name.removeprefix('spiffe_')}", repr(value))
    return value


def _cert_key(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise InvalidBundle("unsupported_key", type(key).__name__)
    return key


def _parse_x509_jwk(raw: Mapping[str, Any]) -> x509.Certificate:
    x5c = raw.get("x5c")
    if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
        raise InvalidBundle("bad_x5c", "x509-svid key needs exactly one certificate")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
    except ValueError as exc:
        raise InvalidBundle("bad_x5c", "not a DER certificate") from exc
    cert_key = _cert_key(cert)
    if not same_key(cert_key, jwk_to_public_key(raw)):
        raise InvalidBundle("key_mismatch", "JWK parameters differ from the x5c key")
    return cert


def _parse_jwt_jwk(raw: Mapping[str, Any]) -> tuple[str, PublicKey]:
    kid = raw.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidBundle("missing_kid")
    return kid, jwk_to_public_key(raw)


def _trust_domain_of(certs: list[x509.Certificate]) -> TrustDomain:
    for cert in certs:
        try:
            uris = uri_sans(cert)
        except InvalidSvid:
            continue
        for uri in uris:
            try:
                return SpiffeId.parse(uri).trust_domain
            except InvalidSpiffeId:
                continue
    raise InvalidBundle("unknown_trust_domain", "no certificate names a SPIFFE trust domain")
