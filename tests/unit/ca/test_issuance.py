"""Issuance through the CA service: the SVID profile, and the CSR attack table.

CSR vectors are made in the test with ``cryptography`` (see ``attack_csr``): each
one is a well-formed request except for the one property under attack.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.attestation.join_token import hash_token
from ca.errors import AttestationFailed, BadCsr, CaError
from ca.service import Caller
from meshward.clock import FixedClock
from meshward.spiffe import SpiffeId
from tests.support.ca import in_process_ca, new_csr, openssl_verify, register

WORKLOAD = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web")
CLI = Caller(address="test")


def _csr(key, uris=(), ca=None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _bad_signature() -> bytes:
    der = bytearray(x509.load_pem_x509_csr(_csr(_p256())).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF
    body = base64.encodebytes(bytes(der)).decode()
    return (
        f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n".encode()
    )


INVALID_IDS = [
    "http://example.org/ns/prod/sa/web",
    "SPIFFE://example.org/x",
    "spiffe:///x",
    "spiffe://Example.org/x",
    "spiffe://example.org:8080/x",
    "spiffe://user@example.org/x",
    "spiffe://example.org/x?q=1",
    "spiffe://example.org/x#frag",
    "spiffe://example.org//x",
    "spiffe://example.org/./x",
    "spiffe://example.org/../x",
    "spiffe://example.org/x/",
    "spiffe://example.org/x%20y",
]

ATTACKS = [
    ("foreign_spiffe_id", lambda: _csr(_p256(), ["spiffe://example.org/ns/prod/sa/admin"])),
    ("foreign_spiffe_id", lambda: _csr(_p256(), ["spiffe://evil.org/ns/prod/sa/web"])),
    ("ca_requested", lambda: _csr(_p256(), [str(WORKLOAD)], ca=True)),
    ("several_uri_sans", lambda: _csr(_p256(), [str(WORKLOAD), "spiffe://example.org/other"])),
    *[("invalid_spiffe_id", lambda bad=bad: _csr(_p256(), [bad])) for bad in INVALID_IDS],
    ("weak_key", lambda: _csr(rsa.generate_private_key(65537, 1024))),
    ("unsupported_curve", lambda: _csr(ec.generate_private_key(ec.SECP521R1()))),
    ("unsupported_curve", lambda: _csr(ec.generate_private_key(ec.SECP256K1()))),
    ("bad_signature", _bad_signature),
    ("too_large", lambda: b"\x00garbage" * (1 << 17)),
    ("bad_pem", lambda: b"not a CSR at all"),
    ("trailing_data", lambda: _csr(_p256()) + b"junk after the PEM block\n"),
    ("bad_pem", lambda: _csr(_p256()) + _csr(_p256())),
    (
        "bad_pem",
        lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
    ),
]


@pytest.mark.parametrize(
    ("reason", "make"), ATTACKS, ids=[f"{i}-{a[0]}" for i, a in enumerate(ATTACKS)]
)
def test_csr_attacks_refused_audited_no_partial_state(tmp_path: Path, reason: str, make) -> None:
    ca = in_process_ca(tmp_path)
    token = ca.create_join_token(WORKLOAD, 600, CLI)
    before = len(ca.store.list_audit())
    with pytest.raises(BadCsr) as err:
        ca.issue_x509(make(), token, Caller(address="10.0.0.1"))
    assert err.value.reason == reason
    assert err.value.status == 400
    audit = ca.store.list_audit()
    assert len(audit) == before + 1
    assert audit[-1].action == "x509_svid" and audit[-1].result == "bad_csr"
    assert audit[-1].serial is None
    # No partial state: the token was not consumed and still works once.
    record = ca.store.get_token(hash_token(token))
    assert record is not None and record.used_at is None
    ca.issue_x509(new_csr()[0], token, Caller(address="10.0.0.1"))


def test_svid_profile(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    token = ca.create_join_token(WORKLOAD, 600, CLI)
    csr, _ = new_csr(WORKLOAD)  # naming the granted ID is allowed
    issued = ca.issue_x509(csr, token, Caller(address="10.0.0.1"))
    cert = issued.cert
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == [str(WORKLOAD)]
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.serial_number.bit_length() >= 64
    assert cert.not_valid_before_utc == clock.now() - dt.timedelta(seconds=60)
    assert cert.not_valid_after_utc == clock.now() + dt.timedelta(hours=1)
    assert issued.chain[1] == ca.authority.active.ca_cert
    bundle = ca.authority.bundle().to_pem()
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain)
    for purpose in ("sslclient", "sslserver"):
        result = openssl_verify(bundle, chain, purpose, tmp_path / purpose, at=clock.now())
        assert result.returncode == 0, result.stderr
    audit = ca.store.list_audit()[-1]
    assert (audit.result, audit.method, audit.serial) == (
        "ok",
        "join_token",
        format(issued.serial, "x"),
    )
    assert audit.not_after == issued.not_after


def test_not_after_capped_at_signing_ca(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    ca_end = ca.authority.active.not_after
    clock.set(ca_end - dt.timedelta(minutes=10))
    issued = ca.issue_x509_local(WORKLOAD, new_csr()[0], ttl=3600)
    assert issued.not_after == ca_end


def test_ttl_is_capped_by_entry_and_max(tmp_path: Path) -> None:
    from ca.store.protocol import Entry

    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    ca.add_entry(Entry("e1", WORKLOAD, frozenset({"k8s:ns:prod"}), x509_ttl=600), CLI)
    assert ca.issue_x509_local(
        WORKLOAD, new_csr()[0], 3600
    ).not_after == clock.now() + dt.timedelta(seconds=600)
    other = SpiffeId.parse("spiffe://example.org/other")
    big = ca.issue_x509_local(other, new_csr()[0], 10**7)
    assert big.not_after == clock.now() + dt.timedelta(seconds=ca.settings.x509_svid_max_ttl)


def test_join_token_replay_and_expiry(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    token = ca.create_join_token(WORKLOAD, 60, CLI)
    ca.issue_x509(new_csr()[0], token, Caller(address="a"))
    with pytest.raises(AttestationFailed):
        ca.issue_x509(new_csr()[0], token, Caller(address="a"))
    late = ca.create_join_token(WORKLOAD, 60, CLI)
    clock.advance(59)
    early = ca.create_join_token(WORKLOAD, 1, CLI)
    clock.advance(1)  # `late` is exactly at its expiry now
    with pytest.raises(AttestationFailed):
        ca.issue_x509(new_csr()[0], late, Caller(address="a"))
    with pytest.raises(AttestationFailed):
        ca.issue_x509(new_csr()[0], early, Caller(address="a"))
    assert [r.result for r in ca.store.list_audit() if r.action == "x509_svid"] == [
        "ok",
        "bad_token",
        "bad_token",
        "bad_token",
    ]


def test_no_credential_and_unknown_token(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    for token in (None, "mwjt.unknown", "eyJhbGciOiJub25lIn0.e30."):
        with pytest.raises(AttestationFailed) as err:
            ca.issue_x509(new_csr()[0], token, Caller(address="a"))
        assert err.value.status == 401


def test_renewal_keeps_identity_and_refuses_other_ids(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    register(ca, WORKLOAD)
    peer = Caller(peer_id=WORKLOAD)
    assert ca.issue_x509(new_csr()[0], None, peer).spiffe_id == WORKLOAD
    with pytest.raises(BadCsr) as err:
        ca.issue_x509(new_csr(SpiffeId.parse("spiffe://example.org/admin"))[0], None, peer)
    assert err.value.reason == "foreign_spiffe_id"
    with pytest.raises(CaError) as err2:
        ca.issue_x509(new_csr()[0], None, Caller(peer_id=SpiffeId.parse("spiffe://evil.org/x")))
    assert err2.value.status == 403


def test_rate_limit_per_caller(tmp_path: Path) -> None:
    from meshward.settings import CaSettings

    clock = FixedClock()
    ca = in_process_ca(
        tmp_path, clock, CaSettings(trust_domain="example.org", rate_burst=2, rate_per_second=1)
    )
    register(ca, WORKLOAD)
    register(ca, SpiffeId.parse("spiffe://example.org/other"))
    peer = Caller(peer_id=WORKLOAD)
    ca.issue_jwt(["a"], None, peer)
    ca.issue_jwt(["a"], None, peer)
    with pytest.raises(CaError) as err:
        ca.issue_jwt(["a"], None, peer)
    assert err.value.status == 429
    ca.issue_jwt(["a"], None, Caller(peer_id=SpiffeId.parse("spiffe://example.org/other")))
    clock.advance(1)
    ca.issue_jwt(["a"], None, peer)


def test_the_ca_server_id_is_reserved(tmp_path: Path) -> None:
    from ca.errors import NotEntitled
    from ca.store.protocol import Entry

    ca = in_process_ca(tmp_path)
    server_id = SpiffeId.parse("spiffe://example.org/meshward/ca")
    calls = [
        lambda: ca.create_join_token(server_id, 60, CLI),
        lambda: ca.add_entry(Entry("x", server_id, frozenset({"k8s:ns:a"})), CLI),
        lambda: ca.issue_x509(new_csr()[0], None, Caller(peer_id=server_id)),
        lambda: ca.issue_jwt(["a"], None, Caller(peer_id=server_id)),
        lambda: ca.issue_x509_local(server_id, new_csr()[0], 300),
    ]
    for call in calls:
        with pytest.raises(NotEntitled) as err:
            call()
        assert err.value.code == "reserved_id"
    server = ca.issue_x509_local(server_id, new_csr()[0], 300, method="server")
    assert server.spiffe_id == server_id


_SEGMENT = st.text("abcXYZ019.-_", min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segments=st.lists(_SEGMENT, min_size=1, max_size=5))
def test_any_valid_spiffe_id_round_trips_through_an_svid(
    tmp_path: Path, segments: list[str]
) -> None:
    spiffe_id = SpiffeId.parse("spiffe://example.org/" + "/".join(segments))
    ca = _shared_ca(tmp_path)
    issued = ca.issue_x509_local(spiffe_id, new_csr(spiffe_id)[0], 300)
    uris = issued.cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert [SpiffeId.parse(u) for u in uris] == [spiffe_id]


_CAS: dict[Path, object] = {}


def _shared_ca(tmp_path: Path):
    if tmp_path not in _CAS:
        _CAS[tmp_path] = in_process_ca(tmp_path)
    return _CAS[tmp_path]
