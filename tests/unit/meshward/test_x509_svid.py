"""SPIFFE ID from a certificate, and CSRs, shared by the CA, the PDP and the agent."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from meshward.spiffe import SpiffeId
from meshward.x509_svid import InvalidSvid, build_csr, is_ca, spiffe_id_of, uri_sans
from tests.support.certs import TestPki

KEY = ec.generate_private_key(ec.SECP256R1())
PKI = TestPki("example.org")


def _cert(uris: list[str], ca: bool = False, san: bool = True) -> x509.Certificate:
    """``san=False``: no SAN extension at all; else ``uris`` and a DNS name."""
    return PKI.leaf(uris, ca=ca, dns_names=["web.local"] if san else ()).cert


def test_one_spiffe_uri_san() -> None:
    cert = _cert(["spiffe://example.org/web"])
    assert spiffe_id_of(cert) == SpiffeId.parse("spiffe://example.org/web")
    assert uri_sans(cert) == ["spiffe://example.org/web"]
    assert not is_ca(cert) and is_ca(_cert(["spiffe://example.org"], ca=True))


@pytest.mark.parametrize(
    ("uris", "san", "reason"),
    [
        ([], True, "uri_san_count"),
        ([], False, "uri_san_count"),
        (["spiffe://example.org/a", "spiffe://example.org/b"], True, "uri_san_count"),
        (["https://example.org/a"], True, "not_spiffe"),
        (["spiffe://Example.org/a"], True, "not_spiffe"),
        (["spiffe://example.org/a/../b"], True, "not_spiffe"),
    ],
)
def test_not_an_svid(uris: list[str], san: bool, reason: str) -> None:
    with pytest.raises(InvalidSvid) as err:
        spiffe_id_of(_cert(uris, san=san))
    assert err.value.reason == reason


@pytest.mark.parametrize("key", [KEY, ed25519.Ed25519PrivateKey.generate()])
def test_build_csr(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    sid = SpiffeId.parse("spiffe://example.org/web")
    csr = build_csr(key, sid)
    assert csr.is_signature_valid and spiffe_id_of(csr) == sid
    assert uri_sans(build_csr(key)) == []
