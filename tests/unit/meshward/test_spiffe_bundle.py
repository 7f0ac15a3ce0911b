"""The SPIFFE bundle document: JWK Set and PEM forms, checked against py-spiffe."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from spiffe import JwtBundle, X509Bundle
from spiffe import TrustDomain as PyTrustDomain

from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import (
    JWT_SVID_USE,
    X509_SVID_USE,
    InvalidBundle,
    SpiffeBundle,
    jwk_thumbprint,
    jwk_to_public_key,
    load_bundle,
    public_key_to_jwk,
)
from tests.support.certs import self_signed_ca

TD = TrustDomain("example.org")
CA1, _ = self_signed_ca()
CA2, _ = self_signed_ca(key=rsa.generate_private_key(65537, 2048))
JWT_EC = ec.generate_private_key(ec.SECP256R1()).public_key()
JWT_384 = ec.generate_private_key(ec.SECP384R1()).public_key()
JWT_ED = ed25519.Ed25519PrivateKey.generate().public_key()


def full_bundle() -> SpiffeBundle:
    return SpiffeBundle(
        TD, (CA1, CA2), {"k1": JWT_EC, "k2": JWT_384, "k3": JWT_ED}, sequence=7, refresh_hint=300
    )


def test_jwks_round_trip_and_shape() -> None:
    bundle = full_bundle()
    doc = bundle.to_jwks()
    assert doc["spiffe_sequence"] == 7
    assert doc["spiffe_refresh_hint"] == 300
    x509_keys = [k for k in doc["keys"] if k["use"] == X509_SVID_USE]
    jwt_keys = [k for k in doc["keys"] if k["use"] == JWT_SVID_USE]
    assert len(x509_keys) == 2 and len(jwt_keys) == 3
    for key in x509_keys:
        assert "kid" not in key
        assert len(key["x5c"]) == 1
    assert all(k["kid"] for k in jwt_keys)
    parsed = SpiffeBundle.from_jwks(bundle.to_json(), TD)
    assert parsed == bundle
    assert parsed.skipped_keys == 0


def test_pem_round_trip_and_trust_domain_from_san() -> None:
    bundle = full_bundle()
    parsed = SpiffeBundle.from_pem(bundle.to_pem())
    assert parsed.trust_domain == TD
    assert parsed.x509_authorities == bundle.x509_authorities
    assert load_bundle(bundle.to_pem()) == parsed
    assert load_bundle(bundle.to_json()) == bundle


def test_py_spiffe_reads_both_forms() -> None:
    bundle = full_bundle()
    py_td = PyTrustDomain("example.org")
    x509_bundle = X509Bundle.parse(py_td, bundle.to_pem())
    assert len(x509_bundle.x509_authorities) == 2
    doc = bundle.to_jwks()
    der = b"".join(base64.b64decode(k["x5c"][0]) for k in doc["keys"] if k["use"] == X509_SVID_USE)
    assert len(X509Bundle.parse_raw(py_td, der).x509_authorities) == 2
    jwt_only = {"keys": [k for k in doc["keys"] if k["use"] == JWT_SVID_USE]}
    jwt_bundle = JwtBundle.parse(py_td, json.dumps(jwt_only).encode())
    assert set(jwt_bundle.jwt_authorities) == {"k1", "k2", "k3"}


@pytest.mark.parametrize(
    ("mutate", "skipped"),
    [
        (lambda k: k.pop("use"), 1),  # no use: ignored per spec
        (lambda k: k.update(use="x509-foo"), 1),  # unknown use: ignored
        (lambda k: k.update(x5c=k["x5c"] * 2), 1),  # x5c with two certificates
        (lambda k: k.pop("x5c"), 1),  # x509-svid without a certificate
        (lambda k: k.update(x5c=["!!notbase64"]), 1),
        (lambda k: k.update(x=k["x"][::-1]), 1),  # JWK key differs from the certificate
    ],
)
def test_malformed_x509_keys_are_skipped(mutate, skipped: int) -> None:
    doc = SpiffeBundle(TD, (CA1,)).to_jwks()
    mutate(doc["keys"][0])
    parsed = SpiffeBundle.from_jwks(doc, TD)
    assert parsed.x509_authorities == ()
    assert parsed.skipped_keys == skipped


def test_jwt_key_without_kid_is_skipped_and_duplicate_kid_rejected() -> None:
    doc = SpiffeBundle(TD, (), {"a": JWT_EC}).to_jwks()
    no_kid = json.loads(json.dumps(doc))
    del no_kid["keys"][0]["kid"]
    assert SpiffeBundle.from_jwks(no_kid, TD).jwt_authorities == {}
    doc["keys"].append(dict(doc["keys"][0]))
    with pytest.raises(InvalidBundle) as err:
        SpiffeBundle.from_jwks(doc, TD)
    assert err.value.reason == "duplicate_kid"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"not json", "not_json"),
        (b"[]", "not_an_object"),
        (b"{}", "missing_keys"),
        (b'{"keys": {}}', "missing_keys"),
        (b'{"keys": [], "spiffe_sequence": -1}', "bad_sequence"),
        (b'{"keys": [], "spiffe_sequence": "1"}', "bad_sequence"),
        (b'{"keys": [], "spiffe_refresh_hint": true}', "bad_refresh_hint"),
        (b"{" + b" " * (1 << 20) + b"}", "too_large"),
    ],
)
def test_bad_documents(document: bytes, reason: str) -> None:
    with pytest.raises(InvalidBundle) as err:
        SpiffeBundle.from_jwks(document, TD)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"garbage", "bad_pem"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "bad_pem"),
    ],
)
def test_bad_pem(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidBundle) as err:
        SpiffeBundle.from_pem(data, TD)
    assert err.value.reason == reason


def test_jwks_without_x509_authority_needs_trust_domain() -> None:
    assert load_bundle(b'{"keys": []}', TD).trust_domain == TD
    with pytest.raises(InvalidBundle) as err:
        load_bundle(b'{"keys": []}')
    assert err.value.reason == "unknown_trust_domain"


def test_value_is_frozen() -> None:
    bundle = full_bundle()
    with pytest.raises(TypeError):
        bundle.jwt_authorities["x"] = JWT_EC  # type: ignore[index]
    assert bundle.with_changes(sequence=8).sequence == 8
    assert bundle.with_changes(sequence=8) != bundle


@pytest.mark.parametrize("key", [JWT_EC, JWT_384, JWT_ED, CA2.public_key()])
def test_jwk_conversion_round_trip(key) -> None:
    assert jwk_to_public_key(public_key_to_jwk(key)) == key
    assert jwk_thumbprint(key) == jwk_thumbprint(jwk_to_public_key(public_key_to_jwk(key)))


def test_thumbprint_matches_rfc7638_example() -> None:
    # RFC 7638 section 3.1: the RSA key's thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    key = jwk_to_public_key({"kty": "RSA", "n": n, "e": "AQAB"})
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@settings(max_examples=25, deadline=None)
@given(
    sequence=st.one_of(st.none(), st.integers(0, 2**53)),
    hint=st.one_of(st.none(), st.integers(0, 86400)),
    kids=st.lists(
        st.text("abcdefghij0123456789-_", min_size=1, max_size=12), unique=True, max_size=4
    ),
)
def test_render_parse_is_identity(sequence: int | None, hint: int | None, kids: list[str]) -> None:
    bundle = SpiffeBundle(TD, (CA1,), dict.fromkeys(kids, JWT_EC), sequence, hint)
    assert SpiffeBundle.from_jwks(bundle.to_json(), TD) == bundle
