"""Running under an upstream CA: meshward's signing CAs chain to the imported one."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.errors import BadRequest
from ca.service import Caller, CertificateAuthority, init_authority, random_serial
from ca.store.sqlite import SqliteStore
from meshward.clock import FixedClock
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId, TrustDomain
from tests.support.ca import new_csr, openssl_verify, register
from tests.support.certs import START, self_signed_ca

TD = TrustDomain("example.org")
SETTINGS = CaSettings(trust_domain="example.org")


def test_issued_chain_verifies_against_the_upstream_root(tmp_path: Path) -> None:
    upstream_cert, upstream_key = self_signed_ca("example.org", days=365)
    clock = FixedClock(START)
    clock.advance(3600)
    authority = init_authority(
        TD, SETTINGS, clock.now(), random_serial, (upstream_cert, upstream_key)
    )
    assert authority.root_cert == upstream_cert
    assert authority.active.ca_cert.issuer == upstream_cert.subject
    ca = CertificateAuthority(authority, SqliteStore(tmp_path / "db"), SETTINGS, clock)
    register(ca, SpiffeId.parse("spiffe://example.org/w"))
    issued = ca.issue_x509(
        new_csr()[0], None, Caller(peer_id=SpiffeId.parse("spiffe://example.org/w"))
    )
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain)
    upstream_pem = upstream_cert.public_bytes(serialization.Encoding.PEM)
    result = openssl_verify(upstream_pem, chain, "sslclient", tmp_path / "v", at=clock.now())
    assert result.returncode == 0, result.stderr
    assert upstream_cert in authority.bundle().x509_authorities


def test_bad_upstreams_are_refused() -> None:
    cert, key = self_signed_ca("example.org", days=365)
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = FixedClock(START).now()
    with pytest.raises(BadRequest):
        init_authority(TD, SETTINGS, now, random_serial, (cert, other_key))
    leafish, leaf_key = self_signed_ca("example.org", days=1)
    with pytest.raises(BadRequest):  # not valid any more
        init_authority(TD, SETTINGS, START.replace(year=2027), random_serial, (leafish, leaf_key))
    assert key
