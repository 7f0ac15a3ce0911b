"""Issuing SVIDs: build -> sign -> check what was issued (pure).

Nothing here reads a clock, a random source or a file: ``now`` and the serial
source are arguments. The CA decides every field of an X.509-SVID; the CSR
only contributes its public key (after its signature is verified) and, if it
names a SPIFFE ID, that name must be exactly the one being granted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca.authority import SerialSource, Slot, _hash_for, key_usage
from ca.errors import BadCsr, BadRequest, IssuanceFailed
from ca.keystore import PrivateKey
from meshward import x509_svid
from meshward.jwt_svid import InvalidJwtSvid, requested_audience, validate_jwt_svid
from meshward.spiffe import SpiffeId
from meshward.x509_svid import csr_pem

__all__ = [
    "CSR_MAX_BYTES",
    "CsrRequest",
    "IssuedJwt",
    "IssuedX509",
    "build_csr",
    "check_audience",
    "check_x509_svid",
    "issue_jwt_svid",
    "issue_x509_svid",
    "jwt_algorithm",
    "parse_csr",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CSR_MAX_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
_PEM_BEGIN = b"-----BEGIN CERTIFICATE REQUEST-----"
_PEM_END = b"-----END CERTIFICATE REQUEST-----"
_CURVES = (ec.SECP256R1, ec.SECP384R1)


@dataclass(frozen=True)
class CsrRequest:
    """A CSR that passed every check, and the SPIFFE ID it names, if any."""

    csr: x509.CertificateSigningRequest
    requested_id: SpiffeId | None


@dataclass(frozen=True)
class IssuedX509:
    spiffe_id: SpiffeId
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


@dataclass(frozen=True)
class IssuedJwt:
    spiffe_id: SpiffeId
    token: str
    kid: str
    expires_at: dt.datetime


def build_csr(key: PrivateKey, spiffe_id: SpiffeId | None = None) -> bytes:
    """A PEM CSR for ``key`` (a client-side helper), naming ``spiffe_id`` if given."""
    return csr_pem(x509_svid.build_csr(key, spiffe_id))


def parse_csr(data: bytes | str) -> CsrRequest:
    """Parse and check a PEM CSR; :class:`BadCsr` names the first failed check."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if len(raw) > CSR_MAX_BYTES:
        raise BadCsr("too_large")
    body = raw.strip()
    if not body.startswith(_PEM_BEGIN) or body.count(_PEM_BEGIN) != 1:
        raise BadCsr("bad_pem")
    if not body.endswith(_PEM_END) or body.count(_PEM_END) != 1:
        raise BadCsr("trailing_data")
    try:
        csr = x509.load_pem_x509_csr(body)
    except ValueError as exc:
        raise BadCsr("bad_pem") from exc
    try:
        if not csr.is_signature_valid:
            raise BadCsr("bad_signature")
        _check_key(csr.public_key())
        requested = _requested_id(csr)
    except BadCsr:
        raise
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        raise BadCsr("bad_extension") from exc
    return CsrRequest(csr, requested)


def _check_key(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise BadCsr("unsupported_curve")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise BadCsr("weak_key")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise BadCsr("unsupported_key")


def _requested_id(csr: x509.CertificateSigningRequest) -> SpiffeId | None:
    try:
        bc = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is not None and bc.ca:
        raise BadCsr("ca_requested")
    try:
        uris = x509_svid.uri_sans(csr)
        if len(uris) > 1:
            raise BadCsr("several_uri_sans")
        return x509_svid.spiffe_id_of(csr) if uris else None
    except x509_svid.InvalidSvid as exc:
        raise BadCsr("invalid_spiffe_id") from exc


def issue_x509_svid(
    request: CsrRequest,
    spiffe_id: SpiffeId,
    slot: Slot,
    chain: Sequence[x509.Certificate],
    now: dt.datetime,
    ttl: dt.timedelta,
    serials: SerialSource,
    dns_names: Sequence[str] = (),
    backdate: dt.timedelta = dt.timedelta(seconds=60),
    ip_addresses: Sequence[IPAddress] = (),
) -> IssuedX509:
    """Sign an X.509-SVID for ``spiffe_id`` with ``slot``'s CA and check it."""
    if request.requested_id is not None and request.requested_id != spiffe_id:
        raise BadCsr("foreign_spiffe_id")
    if ttl <= dt.timedelta(0):
        raise BadRequest("the TTL must be positive", code="bad_ttl")
    serial = serials()
    not_before = max(now - backdate, slot.not_before)
    not_after = min(now + ttl, slot.not_after)
    if not_after <= now:
        raise IssuanceFailed("the signing CA has expired", code="ca_expired")
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(spiffe_id))]
    san += [x509.DNSName(d) for d in dns_names]
    san += [x509.IPAddress(ip) for ip in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(slot.issuer_name)
        .public_key(request.csr.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=True)
        .add_extension(slot.authority_key_id, critical=False)
    )
    try:
        cert = builder.sign(slot.ca_key, _hash_for(slot.ca_key))
    except (ValueError, TypeError) as exc:
        raise IssuanceFailed("signing failed") from exc
    check_x509_svid(cert, slot.ca_cert, spiffe_id, now)
    return IssuedX509(spiffe_id, cert, (cert, *chain))


def check_x509_svid(
    cert: x509.Certificate, issuer: x509.Certificate, spiffe_id: SpiffeId, now: dt.datetime
) -> None:
    """Raise :class:`IssuanceFailed` unless ``cert`` is a valid X.509-SVID for ``spiffe_id``."""

    def fail(what: str) -> IssuanceFailed:
        return IssuanceFailed(f"issued certificate failed its check: {what}", code="self_check")

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError) as exc:
        raise fail("signature") from exc
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    if bc.value.ca or not bc.critical:
        raise fail("basic constraints")
    ku = ext.get_extension_for_class(x509.KeyUsage)
    if not ku.critical or not ku.value.digital_signature or ku.value.key_cert_sign:
        raise fail("key usage")
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    if {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} - set(eku):
        raise fail("extended key usage")
    uris = x509_svid.uri_sans(cert)
    if uris != [str(spiffe_id)]:
        raise fail("URI SAN")
    if cert.serial_number.bit_length() < 64:
        raise fail("serial too short")
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise fail("validity")
    if cert.not_valid_after_utc > issuer.not_valid_after_utc:
        raise fail("outlives its issuer")


def jwt_algorithm(key: PrivateKey) -> str:
    """The JWS algorithm for a signing key (asymmetric only)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES384" if isinstance(key.curve, ec.SECP384R1) else "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "RS256"


def check_audience(audience: object) -> list[str]:
    """A JWT-SVID audience (:func:`meshward.jwt_svid.requested_audience`), else ``BadRequest``."""
    aud = requested_audience(audience)
    if aud is None:
        raise BadRequest("audience must be 1 to 16 non-empty strings", code="bad_audience")
    return aud


def issue_jwt_svid(
    spiffe_id: SpiffeId,
    audience: Sequence[str],
    slot: Slot,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> IssuedJwt:
    """Sign a JWT-SVID with ``slot``'s JWT key and check it with the shared validator."""
    aud = check_audience(audience)
    expires = min(now + ttl, slot.not_after)
    if expires <= now:
        raise IssuanceFailed("the signing key has expired", code="ca_expired")
    alg = jwt_algorithm(slot.jwt_key)
    kid = slot.jwt_kid
    claims = {
        "sub": str(spiffe_id),
        "aud": aud if len(aud) > 1 else aud[0],
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    token = jwt.encode(claims, slot.jwt_key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
    # Check what was issued with the validator every verifier uses (PDP, agent).
    public = {kid: slot.jwt_key.public_key()}
    try:
        checked = validate_jwt_svid(
            token, lambda td: public if td == spiffe_id.trust_domain else None, aud, now
        )
    except InvalidJwtSvid as exc:
        raise IssuanceFailed(
            f"issued JWT-SVID failed its check: {exc.reason}", code="self_check"
        ) from exc
    if checked.spiffe_id != spiffe_id or checked.kid != kid:
        raise IssuanceFailed("issued JWT-SVID failed its check", code="self_check")
    return IssuedJwt(spiffe_id, token, kid, dt.datetime.fromtimestamp(claims["exp"], dt.UTC))  # type: ignore[arg-type]
