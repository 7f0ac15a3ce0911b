"""Rotation: pure predicates, and end to end with a FixedClock and real openssl."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from spiffe import JwtBundle
from spiffe import TrustDomain as PyTrustDomain

from ca.errors import Conflict
from ca.service import Caller
from ca.state import CaFiles
from meshward.clock import FixedClock
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId
from meshward.spiffe_bundle import JWT_SVID_USE
from tests.support.ca import in_process_ca, new_csr, openssl_verify, register

WORKLOAD = SpiffeId.parse("spiffe://example.org/web")
DAY = 86400
SETTINGS = CaSettings(trust_domain="example.org", ca_ttl=6 * DAY, rate_burst=1000)


def test_predicates_one_second_either_side(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock, SETTINGS)
    auth = ca.authority
    start = auth.active.not_before
    half = auth.active.at_fraction(1 / 2)
    assert half == start + (auth.active.not_after - start) / 2
    assert not auth.should_prepare_next(half - dt.timedelta(seconds=1))
    assert auth.should_prepare_next(half)
    assert not auth.should_activate_next(auth.active.not_after)  # nothing prepared
    clock.set(half)
    prepared = ca.rotate_prepare(Caller())
    five_sixths = prepared.active.at_fraction(5 / 6)
    assert not prepared.should_prepare_next(five_sixths)  # one next at a time
    assert not prepared.should_activate_next(five_sixths - dt.timedelta(seconds=1))
    assert prepared.should_activate_next(five_sixths)
    with pytest.raises(Conflict) as info:
        ca.rotate_prepare(Caller())
    assert (info.value.code, info.value.status) == ("already_prepared", 409)


def _chain(issued) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain)


def test_rotation_end_to_end(tmp_path: Path) -> None:
    clock = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    ca = in_process_ca(tmp_path, clock, SETTINGS, persist=True)
    register(ca, WORKLOAD, x509_ttl=DAY)
    peer = Caller(peer_id=WORKLOAD)
    first_slot = ca.authority.active
    sequences = [ca.authority.sequence]
    svids = [ca.issue_x509(new_csr()[0], None, peer)]
    jwts = [ca.issue_jwt(["aud"], None, peer)]

    def check_all_verify(label: str) -> None:
        bundle = ca.authority.bundle()
        py_jwt = JwtBundle.parse(
            PyTrustDomain("example.org"),
            json.dumps(
                {"keys": [k for k in bundle.to_jwks()["keys"] if k["use"] == JWT_SVID_USE]}
            ).encode(),
        )
        for i, svid in enumerate(svids):
            if svid.not_after <= clock.now():
                continue
            for purpose in ("sslclient", "sslserver"):
                result = openssl_verify(
                    bundle.to_pem(), _chain(svid), purpose, tmp_path / f"{label}{i}", at=clock.now()
                )
                assert result.returncode == 0, (label, i, result.stderr)
        for token in jwts:
            if token.expires_at <= clock.now():
                continue
            kid = jwt.get_unverified_header(token.token)["kid"]
            assert py_jwt.get_jwt_authority(kid) is not None, (label, kid)
        sequences.append(bundle.sequence or 0)

    # Half the CA's life: the tick prepares the next slot; it is published, not signing.
    clock.set(first_slot.at_fraction(1 / 2))
    assert ca.tick()
    assert ca.authority.next is not None and ca.authority.active == first_slot
    assert ca.authority.next.ca_cert in ca.authority.bundle().x509_authorities
    assert ca.authority.next.jwt_kid in ca.authority.bundle().jwt_authorities
    svids.append(ca.issue_x509(new_csr()[0], None, peer))
    jwts.append(ca.issue_jwt(["aud"], None, peer))
    assert svids[-1].chain[1] == first_slot.ca_cert
    check_all_verify("prepared")

    # Five sixths: the next slot signs; the old one stays in the bundle.
    clock.set(first_slot.at_fraction(5 / 6))
    assert ca.tick()
    second = ca.authority.active
    assert second != first_slot and ca.authority.retired == (first_slot,)
    svids.append(ca.issue_x509(new_csr()[0], None, peer, ttl=DAY))
    jwts.append(ca.issue_jwt(["aud"], None, peer))
    assert svids[-1].chain[1] == second.ca_cert
    assert jwt.get_unverified_header(jwts[-1].token)["kid"] == second.jwt_kid
    check_all_verify("activated")

    # One second before the old CA's notAfter it is still published; at notAfter it goes.
    clock.set(first_slot.not_after - dt.timedelta(seconds=1))
    ca.tick()
    assert first_slot.ca_cert in ca.authority.bundle().x509_authorities
    check_all_verify("before-retire")
    clock.set(first_slot.not_after)
    ca.tick()
    bundle = ca.authority.bundle()
    assert first_slot.ca_cert not in bundle.x509_authorities
    assert first_slot.jwt_kid not in bundle.jwt_authorities
    check_all_verify("retired")
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)

    # The state on disk is what the CA serves (restart survival of keys).
    assert isinstance(ca.files, CaFiles)
    assert not list(ca.files.root.glob(f"slot-{first_slot.id}.*"))  # pruned keys are gone
    reloaded = ca.files.load(b"test-passphrase-123")
    assert reloaded.bundle() == bundle
    assert reloaded.active.ca_cert == second.ca_cert


def test_rotation_seen_by_another_process(tmp_path: Path) -> None:
    clock = FixedClock()
    server = in_process_ca(tmp_path, clock, SETTINGS, persist=True)
    from ca.service import CertificateAuthority

    assert isinstance(server.files, CaFiles)
    cli = CertificateAuthority(
        server.files.load(b"test-passphrase-123"), server.store, SETTINGS, clock,
        files=server.files, passphrase=b"test-passphrase-123",
    )  # fmt: skip
    cli.rotate_prepare(Caller(address="cli"))
    import os

    os.utime(server.files.meta, (1, 2))  # a distinct mtime even within one clock tick
    assert server.reload_if_changed()
    assert server.authority.next is not None
    assert server.authority.sequence == cli.authority.sequence
