"""The test PKI: roots, intermediates and SVID leaves for tests that need CA material.

Roots and intermediates are made by the CA's own builders (``ca.authority``),
so tests see the same CA profile that ``meshward ca`` issues. Leaves follow the
X.509-SVID profile unless a test asks for a defect (``ca=True`` on a leaf, no
URI SAN, several URI SANs, expired...), which the product never issues. Times
come from the caller so expiry can be tested one second either side.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.authority import CA_BACKDATE, build_root, build_signing_ca
from ca.keystore import PrivateKey
from meshward.spiffe import TrustDomain

__all__ = ["START", "T0", "Issued", "TestPki", "pem", "self_signed_ca", "url_encoded_pem"]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
START = T0


def self_signed_ca(
    trust_domain: str = "example.org", key: PrivateKey | None = None, days: int = 30
) -> tuple[x509.Certificate, PrivateKey]:
    """A root CA for ``trust_domain``, valid from :data:`START` for ``days`` (as ``ca init``)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    ttl = dt.timedelta(days=days) - CA_BACKDATE
    root = build_root(
        TrustDomain(trust_domain), key, START + CA_BACKDATE, ttl, x509.random_serial_number()
    )
    return root, key


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def url_encoded_pem(*certs: x509.Certificate) -> str:
    """As Envoy sends ``attributes.source.certificate`` and XFCC ``Cert=``."""
    return urllib.parse.quote(pem(*certs), safe="")


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class TestPki:
    """Root -> intermediate -> leaves for one trust domain."""

    trust_domain: str = "meshward.test"
    not_before: dt.datetime = T0 - dt.timedelta(days=1)
    not_after: dt.datetime = T0 + dt.timedelta(days=365)
    root: Issued = field(init=False)
    intermediate: Issued = field(init=False)

    __test__ = False  # not a pytest class

    def __post_init__(self) -> None:
        td = TrustDomain(self.trust_domain)
        now, ttl = self.not_before + CA_BACKDATE, self.not_after - self.not_before - CA_BACKDATE
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = build_root(td, root_key, now, ttl, x509.random_serial_number())
        self.root = Issued(root, root_key)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        intermediate = build_signing_ca(td, root, root_key, key, now, ttl, serial, slot_id=1)
        self.intermediate = Issued(intermediate, key)

    def leaf(
        self,
        spiffe_ids: Sequence[str] | str | None = None,
        *,
        path: str = "/ns/default/sa/web",
        ca: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        issuer: Issued | None = None,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> Issued:
        """An X.509-SVID; ``spiffe_ids`` overrides the URI SANs (``[]`` for none).

        ``dns_names`` and ``ip_addresses`` join the URI SANs (a TLS server's names).
        """
        if spiffe_ids is None:
            spiffe_ids = [f"spiffe://{self.trust_domain}{path}"]
        elif isinstance(spiffe_ids, str):
            spiffe_ids = [spiffe_ids]
        key = ec.generate_private_key(ec.SECP256R1())
        signer = issuer or self.intermediate
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("svid"))
            .issuer_name(signer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or T0 - dt.timedelta(hours=1))
            .not_valid_after(not_after or T0 + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, ca, ca, False, False),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in spiffe_ids]
        names += [x509.DNSName(d) for d in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(builder.sign(signer.key, hashes.SHA256()), key)

    def chain(self, leaf: Issued) -> list[x509.Certificate]:
        """Leaf first, then the intermediate (what a workload presents)."""
        return [leaf.cert, self.intermediate.cert]

    @property
    def bundle_pem(self) -> str:
        return pem(self.root.cert)
