"""Two ``meshward ca serve`` replicas on one real PostgreSQL are one CA.

Each signs with its own signing CA under the shared root; both publish the
same bundle; entries, join tokens, audit and rate limits are shared.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from spiffe import TrustDomain as PyTrustDomain
from spiffe import X509Bundle, X509Svid

from tests.support.ca import CaProcess, new_csr, openssl_verify
from tests.support.postgres import PostgresServer
from tests.support.replicas import running_replicas

PY_TD = PyTrustDomain("example.org")


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[list[CaProcess]]:
    with running_replicas(
        tmp_path_factory.mktemp("replicas"), database, MESHWARD_CA__RATE_BURST="1000"
    ) as procs:
        yield procs


def _token(proc: CaProcess, spiffe_id: str) -> str:
    with proc.admin() as admin:
        resp = admin.post("/v1/join-tokens", json={"spiffe_id": spiffe_id, "ttl": 600})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def _issue(proc: CaProcess, token: str) -> tuple[dict[str, str], bytes]:
    csr, key = new_csr()
    with proc.client() as client:
        resp = client.post("/v1/svid/x509", json={"csr": csr.decode(), "token": token})
    assert resp.status_code == 200, resp.text
    der_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return resp.json(), der_key


def test_both_replicas_issue_under_one_bundle(replicas: list[CaProcess], tmp_path: Path) -> None:
    a, b = replicas
    bundle = a.bundle_pem()
    assert b.bundle_pem() == bundle
    authorities = X509Bundle.parse(PY_TD, bundle).x509_authorities
    assert len(authorities) == 3  # the root and one signing CA per replica (r0 and r1)
    issuers = set()
    # A token created at one replica is redeemed at the other, both ways.
    for creator, issuer, name in ((a, b, "web"), (b, a, "api")):
        body, key = _issue(issuer, _token(creator, f"spiffe://example.org/{name}"))
        svid = X509Svid.parse(body["svid"].encode(), key)
        assert str(svid.spiffe_id) == f"spiffe://example.org/{name}"
        for purpose in ("sslclient", "sslserver"):
            result = openssl_verify(bundle, body["svid"].encode(), purpose, tmp_path / name)
            assert result.returncode == 0, result.stderr
        subject = svid.cert_chain[1].subject.rfc4514_string()
        assert f"signing CA {issuer.env['MESHWARD_CA__REPLICA_ID']}/" in subject
        issuers.add(subject)
        assert svid.cert_chain[1] in authorities
    assert len(issuers) == 2  # each replica signed with its own signing CA


def test_entries_and_audit_are_shared(replicas: list[CaProcess], database: str) -> None:
    a, b = replicas
    with a.admin() as admin:
        added = admin.post(
            "/v1/entries",
            json={"spiffe_id": "spiffe://example.org/shared", "selectors": ["k8s:ns:x"]},
        )
    assert added.status_code == 201
    with b.admin() as admin:
        listed = admin.get("/v1/entries").json()["entries"]
        assert added.json() in listed
        assert admin.delete(f"/v1/entries/{added.json()['id']}").status_code == 204
    with a.admin() as admin:
        assert added.json() not in admin.get("/v1/entries").json()["entries"]
    with psycopg.connect(database) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit ORDER BY id")]
    assert "entry_add" in actions and "entry_remove" in actions


def test_token_redeemed_at_two_replicas_at_once_succeeds_once(replicas: list[CaProcess]) -> None:
    for round_ in range(5):
        token = _token(replicas[0], f"spiffe://example.org/race{round_}")
        barrier = threading.Barrier(6)
        codes: list[int] = []

        def redeem(
            proc: CaProcess,
            token: str = token,
            barrier: threading.Barrier = barrier,
            codes: list[int] = codes,
        ) -> None:
            csr, _ = new_csr()
            with proc.client() as client:
                barrier.wait()
                resp = client.post("/v1/svid/x509", json={"csr": csr.decode(), "token": token})
                codes.append(resp.status_code)

        threads = [threading.Thread(target=redeem, args=(replicas[i % 2],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [200] + [401] * 5, codes


def test_rate_limit_holds_across_replicas(tmp_path: Path, postgres_url: str) -> None:
    with running_replicas(
        tmp_path, postgres_url, MESHWARD_CA__RATE_BURST="4", MESHWARD_CA__RATE_PER_SECOND="0.01"
    ) as (a, b):
        codes = []
        for i in range(8):
            with (a if i % 2 else b).client() as client:
                codes.append(client.post("/v1/svid/x509", json={"csr": "x"}).status_code)
    # The same caller (127.0.0.1): four requests in the shared burst, then 429 at both.
    assert codes[:4] == [400] * 4 and codes[4:] == [429] * 4
