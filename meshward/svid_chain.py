"""Verifying an X.509-SVID chain against trust anchors, and the report of one SVID.

One verification of "does this chain prove this SPIFFE ID", used by the PDP
(mTLS peers and forwarded client certificates, :mod:`authz.authn.peer`) and by
``meshward ca svid inspect`` (:func:`inspect_svid`). Pure: the time and the
anchors are values. The leaf must carry exactly one URI SAN that is a SPIFFE
ID, must not be a CA, and must chain (through CA certificates from the chain,
at most :data:`MAX_CHAIN` in all) to an X.509 authority of its own trust
domain, every certificate valid at ``now`` (``not_after`` itself included).

Anything else is an :class:`~meshward.x509_svid.InvalidSvid` whose ``reason``
is one of: ``cert_missing``, ``chain_too_long``, ``cert_malformed``,
``cert_uri_san_count``, ``cert_not_spiffe``, ``cert_leaf_is_ca``,
``foreign_trust_domain``, ``chain_untrusted``, ``cert_expired``,
``cert_not_yet_valid``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from meshward.clock import rfc3339
from meshward.spiffe import SpiffeId, TrustDomain
from meshward.x509_svid import InvalidSvid, is_ca, spiffe_id_of, uri_sans

__all__ = [
    "MAX_CHAIN",
    "Authorities",
    "SvidReport",
    "VerifiedSvid",
    "certificate_summary",
    "inspect_svid",
    "verify_svid",
    "verify_svid_chain",
]

MAX_CHAIN = 8

# The X.509 authorities trusted for a trust domain (none: the domain is foreign).
Authorities = Callable[[TrustDomain], Sequence[x509.Certificate]]

_LEAF_REASONS = {"uri_san_count": "cert_uri_san_count", "not_spiffe": "cert_not_spiffe"}


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return is_ca(cert)
    except InvalidSvid as exc:
        raise InvalidSvid("cert_malformed", exc.detail) from exc


def _check_time(cert: x509.Certificate, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise InvalidSvid("cert_not_yet_valid")
    if now > cert.not_valid_after_utc:
        raise InvalidSvid("cert_expired")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class VerifiedSvid:
    """A chain that verified: its SPIFFE ID, the leaf's expiry, and when the same
    chain verifies against the same authorities — from the latest ``not_before``
    to the earliest ``not_after`` of the certificates on its path (both included).
    Nothing else in the verification depends on the time."""

    spiffe_id: SpiffeId
    expires_at: dt.datetime
    valid_from: dt.datetime
    valid_until: dt.datetime


def verify_svid_chain(
    chain: Sequence[x509.Certificate], authorities: Authorities, now: dt.datetime
) -> tuple[SpiffeId, dt.datetime]:
    """Verify an X.509-SVID chain (leaf first); return its SPIFFE ID and expiry."""
    verified = verify_svid(chain, authorities, now)
    return verified.spiffe_id, verified.expires_at


def verify_svid(
    chain: Sequence[x509.Certificate], authorities: Authorities, now: dt.datetime
) -> VerifiedSvid:
    """:func:`verify_svid_chain`, reporting the window in which the chain verifies."""
    if not chain:
        raise InvalidSvid("cert_missing")
    if len(chain) > MAX_CHAIN:
        raise InvalidSvid("chain_too_long")
    leaf = chain[0]
    try:
        spiffe_id = spiffe_id_of(leaf)
    except InvalidSvid as exc:
        raise InvalidSvid(_LEAF_REASONS.get(exc.reason, "cert_malformed"), exc.detail) from exc
    if _is_ca(leaf):
        raise InvalidSvid("cert_leaf_is_ca")
    roots = authorities(spiffe_id.trust_domain)
    if not roots:
        raise InvalidSvid("foreign_trust_domain", spiffe_id.trust_domain.name)
    intermediates = list(chain[1:])
    current = leaf
    path = [leaf]
    for _ in range(MAX_CHAIN):
        _check_time(current, now)
        for root in roots:
            if _signed_by(current, root):
                _check_time(root, now)
                path.append(root)
                return VerifiedSvid(
                    spiffe_id,
                    leaf.not_valid_after_utc,
                    max(c.not_valid_before_utc for c in path),
                    min(c.not_valid_after_utc for c in path),
                )
        parent = next(
            (c for c in intermediates if _is_ca(c) and _signed_by(current, c)),
            None,
        )
        if parent is None:
            raise InvalidSvid("chain_untrusted")
        intermediates.remove(parent)
        path.append(parent)
        current = parent
    raise InvalidSvid("chain_too_long")


def certificate_summary(cert: x509.Certificate) -> dict[str, Any]:
    """Subject, serial (hex) and validity (RFC 3339) of a certificate, as JSON values."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": rfc3339(cert.not_valid_before_utc),
        "not_after": rfc3339(cert.not_valid_after_utc),
    }


@dataclass(frozen=True)
class SvidReport:
    """What ``ca svid inspect`` prints: the leaf, and whether the chain verifies."""

    leaf: x509.Certificate
    chain_length: int
    bundle: str  # where the trust anchors came from
    now: dt.datetime
    problem: str | None  # the :class:`InvalidSvid` reason; None when valid

    @property
    def valid(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        try:
            spiffe_ids = uri_sans(self.leaf)
        except InvalidSvid:
            spiffe_ids = []
        return {
            "spiffe_id": spiffe_ids[0] if len(spiffe_ids) == 1 else spiffe_ids,
            "issuer": self.leaf.issuer.rfc4514_string(),
            **certificate_summary(self.leaf),
            "expires_in_seconds": int((self.leaf.not_valid_after_utc - self.now).total_seconds()),
            "chain_length": self.chain_length,
            "bundle": self.bundle,
            "valid": self.valid,
            "problem": self.problem,
        }


def inspect_svid(
    chain: Sequence[x509.Certificate], authorities: Authorities, source: str, now: dt.datetime
) -> SvidReport:
    """Verify ``chain`` (leaf first, not empty) against ``authorities`` (read from ``source``)."""
    try:
        verify_svid_chain(chain, authorities, now)
        problem = None
    except InvalidSvid as exc:
        problem = exc.reason
    return SvidReport(chain[0], len(chain), source, now, problem)
