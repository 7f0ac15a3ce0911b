"""X.509-SVIDs on the client side: the SPIFFE ID a certificate names, and CSRs.

One reading of "which SPIFFE ID is this certificate", used by the CA (mTLS
callers, its own checks), the PDP (peer chains) and the node agent (its node
SVID, the CA's server certificate): the certificate carries exactly one URI
SAN (X.509-SVID §2) and it is a valid SPIFFE ID. Anything else is an
:class:`InvalidSvid` with a short ``reason``:

- ``malformed``: the SAN extension cannot be parsed;
- ``uri_san_count``: no URI SAN, or more than one;
- ``not_spiffe``: the one URI SAN is not a SPIFFE ID.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshward.spiffe import InvalidSpiffeId, SpiffeError, SpiffeId

__all__ = ["InvalidSvid", "build_csr", "csr_pem", "is_ca", "spiffe_id_of", "uri_sans"]

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class InvalidSvid(SpiffeError, ValueError):
    """A certificate that is not a (valid) X.509-SVID; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(
            f"not an X.509-SVID: {reason.replace('_', ' ')}" + (f": {detail}" if detail else "")
        )
        self.reason = reason
        self.detail = detail


def uri_sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The URI SANs of a certificate or CSR (none when it has no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        raise InvalidSvid("malformed", "bad SAN extension") from exc
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def spiffe_id_of(cert: x509.Certificate | x509.CertificateSigningRequest) -> SpiffeId:
    """The one SPIFFE ID ``cert`` names, or :class:`InvalidSvid`."""
    uris = uri_sans(cert)
    if len(uris) != 1:
        raise InvalidSvid("uri_san_count", f"{len(uris)} URI SANs")
    try:
        return SpiffeId.parse(uris[0])
    except InvalidSpiffeId as exc:
        raise InvalidSvid("not_spiffe", exc.reason) from exc


def is_ca(cert: x509.Certificate | x509.CertificateSigningRequest) -> bool:
    """True when basicConstraints says CA (a missing extension is not a CA)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
    except ValueError as exc:
        raise InvalidSvid("malformed", "bad basicConstraints") from exc


def _hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


def build_csr(key: SigningKey, spiffe_id: SpiffeId | None = None) -> x509.CertificateSigningRequest:
    """A CSR for ``key``, naming ``spiffe_id`` if given (the CA decides the rest)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if spiffe_id is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
            critical=False,
        )
    return builder.sign(key, _hash_for(key))


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)
