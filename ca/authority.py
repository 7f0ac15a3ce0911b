"""The CA hierarchy and its rotation, as pure values and predicates.

A root (self-signed and long-lived, or an imported upstream CA) signs
intermediate signing CAs. Each signing CA lives in a :class:`Slot` together
with the JWT key that is rotated with it. An :class:`Authority` holds the
active slot, at most one prepared ``next`` slot and the retired slots whose
SVIDs may still be in use.

Rotation is a small state machine driven by one task that owns the I/O::

    prepare  (should_prepare_next: half the active CA's life is used)
        the next slot is published in the bundle before it signs anything
    activate (should_activate_next: five sixths of its life is used)
        the next slot signs; the old one is retired but stays in the bundle
    prune    (should_prune: a retired slot is past its notAfter)
        SVIDs never outlive their signing CA, so none is valid any more

Every change bumps the bundle's ``spiffe_sequence``.

Replicas on one database (:mod:`ca.replicas`) each keep their own slots
under the shared root; the others' published signing CAs and JWT keys are
the authority's ``peers``: in the bundle, never used to sign.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ca.errors import CaError, Conflict
from ca.keystore import PrivateKey
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import PublicKey, SpiffeBundle, jwk_thumbprint

__all__ = [
    "Authority",
    "PeerCa",
    "SerialSource",
    "Slot",
    "build_root",
    "build_signing_ca",
    "key_usage",
    "make_slot",
]

SerialSource = Callable[[], int]
CA_BACKDATE = dt.timedelta(seconds=60)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def build_root(
    trust_domain: TrustDomain,
    key: PrivateKey,
    now: dt.datetime,
    ttl: dt.timedelta,
    serial: int,
) -> x509.Certificate:
    """A self-signed root CA for ``trust_domain``."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshward"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"meshward root CA {trust_domain}"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - CA_BACKDATE)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(trust_domain.id))]),
            critical=False,
        )
        .sign(key, _hash_for(key))
    )


@functools.cache  # two immutable values, made once rather than per SVID
def key_usage(*, ca: bool) -> x509.KeyUsage:
    """The key usage of a signing certificate (``ca``: certificates and CRLs only)
    or of an SVID (digital signatures only), as the X.509-SVID spec requires."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def build_signing_ca(
    trust_domain: TrustDomain,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    key: PrivateKey,
    now: dt.datetime,
    ttl: dt.timedelta,
    serial: int,
    slot_id: int,
    label: str = "",
) -> x509.Certificate:
    """An intermediate signing CA: CA=true, pathLen 0, keyCertSign+cRLSign, the TD's ID.

    ``label`` tells replicas' signing CAs apart in their subject (``r1/3``).
    """
    not_after = min(now + ttl, issuer_cert.not_valid_after_utc)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshward"),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                f"meshward signing CA {label}/{slot_id}"
                if label
                else f"meshward signing CA {slot_id}",
            ),
        ]
    )
    issuer_ski = x509.SubjectKeyIdentifier.from_public_key(issuer_cert.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(max(now - CA_BACKDATE, issuer_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(trust_domain.id))]),
            critical=False,
        )
        .sign(issuer_key, _hash_for(issuer_key))
    )


@dataclass(frozen=True)
class Slot:
    """One generation of signing material: an intermediate CA and a JWT key.

    What every SVID it signs repeats (issuer name, authority key identifier,
    JWT ``kid``) is computed once per slot, not per issuance.
    """

    id: int
    ca_cert: x509.Certificate
    ca_key: PrivateKey
    jwt_key: PrivateKey

    @functools.cached_property
    def jwt_kid(self) -> str:
        return jwk_thumbprint(self.jwt_key.public_key())

    @functools.cached_property
    def issuer_name(self) -> x509.Name:
        return self.ca_cert.subject

    @functools.cached_property
    def authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key())

    @property
    def not_before(self) -> dt.datetime:
        return self.ca_cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.ca_cert.not_valid_after_utc

    def at_fraction(self, fraction: float) -> dt.datetime:
        """The moment ``fraction`` of this slot's life has passed."""
        return self.not_before + (self.not_after - self.not_before) * fraction


def make_slot(
    slot_id: int,
    trust_domain: TrustDomain,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    ca_key: PrivateKey,
    jwt_key: PrivateKey,
    now: dt.datetime,
    ttl: dt.timedelta,
    serial: int,
    label: str = "",
) -> Slot:
    cert = build_signing_ca(
        trust_domain, root_cert, root_key, ca_key, now, ttl, serial, slot_id, label
    )
    return Slot(slot_id, cert, ca_key, jwt_key)


@dataclass(frozen=True)
class PeerCa:
    """Another replica's published signing CA and JWT public key (bundle only)."""

    ca_cert: x509.Certificate
    jwt_public_key: PublicKey

    @property
    def jwt_kid(self) -> str:
        return jwk_thumbprint(self.jwt_public_key)


PREPARE_AT = 1 / 2
ACTIVATE_AT = 5 / 6


@dataclass(frozen=True)
class Authority:
    """The whole CA state: root, active/next/retired slots, bundle sequence."""

    trust_domain: TrustDomain
    root_cert: x509.Certificate
    root_key: PrivateKey
    active: Slot
    next: Slot | None = None
    retired: tuple[Slot, ...] = ()
    sequence: int = 1
    refresh_hint: int = 300
    peers: tuple[PeerCa, ...] = ()
    label: str = ""  # the replica's name in its signing CAs' subjects

    # -- predicates (pure) ----------------------------------------------------

    def should_prepare_next(self, now: dt.datetime) -> bool:
        return self.next is None and now >= self.active.at_fraction(PREPARE_AT)

    def should_activate_next(self, now: dt.datetime) -> bool:
        return self.next is not None and now >= self.active.at_fraction(ACTIVATE_AT)

    def should_prune(self, now: dt.datetime) -> bool:
        return any(now >= s.not_after for s in self.retired)

    # -- transitions (pure: each returns a new Authority) ---------------------

    def prepare(self, slot: Slot) -> Authority:
        """Publish ``slot`` as next; it signs nothing until :meth:`activate`."""
        if self.next is not None:
            raise Conflict("a next signing CA is already prepared", code="already_prepared")
        if slot.id <= max(s.id for s in self.slots):
            raise CaError("slot ids must increase", code="bad_slot")
        return replace(self, next=slot, sequence=self.sequence + 1)

    def activate(self) -> Authority:
        if self.next is None:
            raise Conflict("no next signing CA is prepared", code="nothing_prepared")
        return replace(
            self,
            active=self.next,
            next=None,
            retired=(*self.retired, self.active),
            sequence=self.sequence + 1,
        )

    def prune(self, now: dt.datetime) -> Authority:
        if not self.should_prune(now):
            return self
        kept = tuple(s for s in self.retired if now < s.not_after)
        return replace(self, retired=kept, sequence=self.sequence + 1)

    # -- views ----------------------------------------------------------------

    @property
    def slots(self) -> tuple[Slot, ...]:
        """Every slot still published, oldest first."""
        return (*self.retired, self.active, *((self.next,) if self.next else ()))

    def chain(self) -> tuple[x509.Certificate, ...]:
        """What follows a leaf in an SVID chain: the active signing CA."""
        return (self.active.ca_cert,)

    def bundle(self) -> SpiffeBundle:
        """The trust bundle: the root and every published signing CA; their JWT keys."""
        cas = [s.ca_cert for s in self.slots]
        jwt_keys = {s.jwt_kid: s.jwt_key.public_key() for s in self.slots}
        if self.peers:
            # Every replica publishes the same document: one order for all.
            cas = sorted(
                (*cas, *(p.ca_cert for p in self.peers)),
                key=lambda c: (c.not_valid_before_utc, c.serial_number),
            )
            jwt_keys = dict(
                sorted({**jwt_keys, **{p.jwt_kid: p.jwt_public_key for p in self.peers}}.items())
            )
        return SpiffeBundle(
            self.trust_domain,
            (self.root_cert, *cas),
            jwt_keys,
            sequence=self.sequence,
            refresh_hint=self.refresh_hint,
        )
