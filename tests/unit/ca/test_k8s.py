"""Kubernetes service-account token attestation against a cluster JWKS.

Tokens are made here with a fresh RSA key in the shape the API server issues
(issuer, audience, ``kubernetes.io`` claim); attacks change one thing each.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from ca.attestation.k8s import K8sAttestor
from ca.errors import AttestationFailed, NotEntitled
from ca.service import Caller
from ca.store.protocol import Entry
from meshward.clock import FixedClock
from meshward.spiffe import SpiffeId
from tests.support.ca import in_process_ca, new_csr
from tests.support.tokens import unsigned_token

ISSUER = "https://kubernetes.default.svc.cluster.local"
KEY = rsa.generate_private_key(65537, 2048)
OTHER = rsa.generate_private_key(65537, 2048)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _jwks_file(tmp_path: Path) -> Path:
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


def _token(key=KEY, kid="k1", alg="RS256", **over) -> str:
    claims = {
        "iss": ISSUER,
        "aud": ["meshward"],
        "sub": "system:serviceaccount:prod:web",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
        "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "web", "uid": "u"}},
    }
    claims.update(over)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_valid_token_selectors(tmp_path: Path) -> None:
    att = K8sAttestor.from_file(_jwks_file(tmp_path), ISSUER, "meshward")
    assert att.attest(_token(), NOW) == {"k8s:ns:prod", "k8s:sa:web"}
    assert att.attest(_token(), NOW + dt.timedelta(seconds=599))


@pytest.mark.parametrize(
    ("token", "at"),
    [
        (_token(), NOW + dt.timedelta(seconds=600)),  # expired, exactly at exp
        (_token(), NOW - dt.timedelta(seconds=1)),  # not yet valid
        (_token(aud=["other"]), NOW),
        (_token(iss="https://evil"), NOW),
        (_token(kid="nope"), NOW),
        (_token(key=OTHER), NOW),
        (
            jwt.encode(
                {"iss": ISSUER, "aud": "meshward"},
                "s" * 32,
                algorithm="HS256",
                headers={"kid": "k1"},
            ),
            NOW,
        ),
        (
            unsigned_token(
                {"alg": "none", "typ": "JWT", "kid": "k1"}, {"iss": ISSUER, "aud": "meshward"}
            ),
            NOW,
        ),
        (_token(**{"kubernetes.io": {}}), NOW),
        ("x" * 20000, NOW),
        ("not.a.jwt", NOW),
    ],
)
def test_attacks(tmp_path: Path, token: str, at: dt.datetime) -> None:
    att = K8sAttestor.from_file(_jwks_file(tmp_path), ISSUER, "meshward")
    with pytest.raises(AttestationFailed):
        att.attest(token, at)


def test_issuance_by_k8s_token_matches_entries(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path, FixedClock(NOW))
    ca.k8s = K8sAttestor.from_file(_jwks_file(tmp_path), ISSUER, "meshward")
    web = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web")
    ca.add_entry(Entry("e1", web, frozenset({"k8s:ns:prod", "k8s:sa:web"})), Caller())
    ca.add_entry(
        Entry(
            "e2", SpiffeId.parse("spiffe://example.org/db"), frozenset({"k8s:ns:prod", "k8s:sa:db"})
        ),
        Caller(),
    )
    issued = ca.issue_x509(new_csr()[0], _token(), Caller(address="pod"))
    assert issued.spiffe_id == web
    assert ca.store.list_audit()[-1].method == "k8s"
    # A token that no entry matches is refused (403), and audited.
    with pytest.raises(NotEntitled):
        ca.issue_x509(
            new_csr()[0],
            _token(**{"kubernetes.io": {"namespace": "dev", "serviceaccount": {"name": "web"}}}),
            Caller(),
        )
    assert ca.store.list_audit()[-1].result == "no_matching_entry"


def test_a_key_of_another_type_than_the_alg_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    # A JWKS entry without "alg" (the API server may omit it): an ES256 token naming
    # the RSA key's kid made PyJWT raise TypeError, which escaped as a 500.
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    jwk.update(kid="k1", use="sig")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    att = K8sAttestor.from_file(path, ISSUER, "meshward")
    forged = _token(key=ec.generate_private_key(ec.SECP256R1()), alg="ES256")
    with pytest.raises(AttestationFailed) as caught:
        att.attest(forged, NOW)
    assert caught.value.code == "bad_token"


@pytest.mark.parametrize(
    "over",
    [
        {"kubernetes.io": {"namespace": "prod", "serviceaccount": "web"}},
        {"kubernetes.io": "prod"},
        {"exp": float("nan")},
        {"exp": "never"},
    ],
)
def test_signed_but_misshapen_claims_are_refused(tmp_path: Path, over: dict[str, object]) -> None:
    att = K8sAttestor.from_file(_jwks_file(tmp_path), ISSUER, "meshward")
    with pytest.raises(AttestationFailed) as caught:
        att.attest(_token(**over), NOW)
    assert caught.value.code == "bad_token"
