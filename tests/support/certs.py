"""A small test PKI built with ``cryptography``: root, intermediate, SVID leaves.

Every certificate follows the X.509-SVID profile unless a test asks for a
defect (``ca=True`` on a leaf, no URI SAN, several URI SANs, expired...).
Times come from the caller so expiry can be tested one second either side.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "TestPki", "pem", "url_encoded_pem"]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


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
        self.root = self._ca(f"{self.trust_domain} root", None)
        self.intermediate = self._ca(f"{self.trust_domain} intermediate", self.root)

    def _ca(self, cn: str, issuer: Issued | None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.cert.subject if issuer else _name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{self.trust_domain}")]
                ),
                critical=False,
            )
        )
        signer = issuer.key if issuer else key
        return Issued(builder.sign(signer, hashes.SHA256()), key)

    def leaf(
        self,
        spiffe_ids: Sequence[str] | str | None = None,
        *,
        path: str = "/ns/default/sa/web",
        ca: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        issuer: Issued | None = None,
    ) -> Issued:
        """An X.509-SVID; ``spiffe_ids`` overrides the URI SANs (``[]`` for none)."""
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
        if spiffe_ids:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(u) for u in spiffe_ids]
                ),
                critical=False,
            )
        return Issued(builder.sign(signer.key, hashes.SHA256()), key)

    def chain(self, leaf: Issued) -> list[x509.Certificate]:
        """Leaf first, then the intermediate (what a workload presents)."""
        return [leaf.cert, self.intermediate.cert]

    @property
    def bundle_pem(self) -> str:
        return pem(self.root.cert)
