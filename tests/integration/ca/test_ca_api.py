"""The CA's HTTPS API, served by the real ``meshward ca serve`` on loopback.

Issued chains are checked by the real ``openssl verify`` and by py-spiffe.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from spiffe import JwtBundle, JwtSvid, X509Bundle, X509Svid
from spiffe import TrustDomain as PyTrustDomain

from meshward.spiffe import SpiffeId
from meshward.spiffe_bundle import JWT_SVID_USE, X509_SVID_USE, SpiffeBundle
from tests.support.ca import CaProcess, new_csr, openssl_verify, running_ca
from tests.support.cli import REPO
from tests.support.wait import eventually

PY_TD = PyTrustDomain("example.org")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaProcess]:
    with running_ca(
        tmp_path_factory.mktemp("ca"),
        MESHWARD_CA__ROTATE_CHECK_SECONDS="0.3",
        MESHWARD_CA__RATE_BURST="40",
        MESHWARD_CA__X509_SVID_MIN_TTL="1",  # one test needs an SVID that expires mid-test
    ) as proc:
        yield proc


def _token(ca: CaProcess, spiffe_id: str) -> str:
    with ca.admin() as admin:
        resp = admin.post("/v1/join-tokens", json={"spiffe_id": spiffe_id, "ttl": 600})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def _issue(ca: CaProcess, spiffe_id: str, out: Path) -> dict[str, str]:
    csr, key = new_csr()
    with ca.client() as client:
        resp = client.post(
            "/v1/svid/x509", json={"csr": csr.decode(), "token": _token(ca, spiffe_id)}
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    out.mkdir(parents=True, exist_ok=True)
    (out / "svid.pem").write_text(body["svid"])
    (out / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return body  # type: ignore[no-any-return]


def test_bundle_documents_parse_with_py_spiffe(ca: CaProcess) -> None:
    with ca.client() as client:
        doc = client.get("/v1/bundle").json()
        pem = client.get("/v1/bundle.pem").content
    ours = SpiffeBundle.from_jwks(doc, SpiffeBundle.from_pem(pem).trust_domain)
    assert ours.to_pem() == pem
    assert doc["spiffe_sequence"] >= 1 and doc["spiffe_refresh_hint"] == 300
    x509_keys = [k for k in doc["keys"] if k["use"] == X509_SVID_USE]
    assert all("kid" not in k and len(k["x5c"]) == 1 for k in x509_keys)
    der = b"".join(base64.b64decode(k["x5c"][0]) for k in x509_keys)
    assert len(X509Bundle.parse_raw(PY_TD, der).x509_authorities) == len(x509_keys)
    assert len(X509Bundle.parse(PY_TD, pem).x509_authorities) == len(x509_keys)
    jwt_only = {"keys": [k for k in doc["keys"] if k["use"] == JWT_SVID_USE]}
    assert JwtBundle.parse(PY_TD, json.dumps(jwt_only).encode()).jwt_authorities


def test_join_token_issuance_verifies_everywhere(ca: CaProcess, tmp_path: Path) -> None:
    body = _issue(ca, "spiffe://example.org/ns/prod/sa/web", tmp_path / "web")
    assert body["spiffe_id"] == "spiffe://example.org/ns/prod/sa/web"
    assert body["expires_at"].endswith("Z")
    bundle = ca.bundle_pem()
    for purpose in ("sslclient", "sslserver"):
        result = openssl_verify(bundle, body["svid"].encode(), purpose, tmp_path / purpose)
        assert result.returncode == 0, result.stderr
    svid = X509Svid.parse(body["svid"].encode(), (tmp_path / "web" / "key.pem").read_bytes())
    assert str(svid.spiffe_id) == body["spiffe_id"]
    assert len(svid.cert_chain) == 2


def test_concurrent_double_redemption_exactly_one(ca: CaProcess) -> None:
    token = _token(ca, "spiffe://example.org/race")
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def redeem() -> None:
        csr, _ = new_csr()
        with ca.client() as client:
            barrier.wait()
            codes.append(
                client.post("/v1/svid/x509", json={"csr": csr.decode(), "token": token}).status_code
            )

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [401] * 7
    assert ca.log is not None and token not in ca.log.read_text()  # never logged


def _csr_ca_true() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            lambda: {"csr": new_csr(SpiffeId.parse("spiffe://example.org/admin"))[0].decode()},
            400,
            "bad_csr",
        ),
        (lambda: {"csr": _csr_ca_true()}, 400, "bad_csr"),
        (lambda: {"csr": new_csr()[0].decode() + "trailing junk"}, 400, "bad_csr"),
        (lambda: {"csr": "A" * (1 << 20)}, 400, "body_too_large"),
        (lambda: {"csr": 5}, 400, "bad_csr"),
        (lambda: [1, 2], 400, "bad_json"),
    ],
)
def test_csr_attacks_over_http(ca: CaProcess, body, status: int, code: str) -> None:
    token = _token(ca, "spiffe://example.org/attacked")
    payload = body()
    if isinstance(payload, dict):
        payload["token"] = token
    before = len(ca.audit_lines())
    with ca.client() as client:
        resp = client.post("/v1/svid/x509", json=payload)
        assert resp.status_code == status
        assert resp.json()["error"] == code
        # The token was not consumed by the refused request.
        ok = client.post("/v1/svid/x509", json={"csr": new_csr()[0].decode(), "token": token})
        assert ok.status_code == 200
    lines = ca.audit_lines()[before:]
    assert [line["result"] for line in lines if line["action"] == "x509_svid"][:1] == [code]
    assert not any(token in json.dumps(line) for line in lines)


def _entry(ca: CaProcess, spiffe_id: str, **fields: object) -> str:
    with ca.admin() as admin:
        resp = admin.post(
            "/v1/entries", json={"spiffe_id": spiffe_id, "selectors": ["k8s:ns:x"], **fields}
        )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_renewal_and_jwt_over_mtls(ca: CaProcess, tmp_path: Path) -> None:
    _issue(ca, "spiffe://example.org/api", tmp_path / "api")
    _entry(ca, "spiffe://example.org/api")  # a JWT-SVID needs a live entry
    with ca.client(tmp_path / "api") as client:
        csr, _ = new_csr()
        renewed = client.post("/v1/svid/x509", json={"csr": csr.decode()})
        assert (
            renewed.status_code == 200 and renewed.json()["spiffe_id"] == "spiffe://example.org/api"
        )
        jwt_resp = client.post("/v1/svid/jwt", json={"audience": ["billing"]})
        assert jwt_resp.status_code == 200
        assert client.get("/v1/entries").status_code == 403
        doc = client.get("/v1/bundle").json()
    jwt_only = {"keys": [k for k in doc["keys"] if k["use"] == JWT_SVID_USE]}
    svid = JwtSvid.parse_and_validate(
        jwt_resp.json()["token"], JwtBundle.parse(PY_TD, json.dumps(jwt_only).encode()), {"billing"}
    )
    assert str(svid.spiffe_id) == "spiffe://example.org/api"
    with ca.client() as anonymous:
        assert anonymous.post("/v1/svid/jwt", json={"audience": ["x"]}).status_code == 401
        assert anonymous.get("/v1/entries").status_code == 401


def test_admin_entries_and_rotation(ca: CaProcess) -> None:
    with ca.admin() as admin:
        added = admin.post(
            "/v1/entries",
            json={
                "spiffe_id": "spiffe://example.org/db",
                "selectors": ["k8s:ns:prod", "k8s:sa:db"],
                "x509_ttl": 600,
            },
        )
        assert added.status_code == 201
        entry_id = added.json()["id"]
        listed = admin.get("/v1/entries").json()["entries"]
        assert any(
            e["id"] == entry_id and e["selectors"] == ["k8s:ns:prod", "k8s:sa:db"] for e in listed
        )
        assert (
            admin.post("/v1/entries", json={"spiffe_id": "spiffe://other.org/x"}).status_code == 400
        )
        assert admin.delete(f"/v1/entries/{entry_id}").status_code == 204
        assert admin.delete(f"/v1/entries/{entry_id}").status_code == 404
        before = admin.get("/v1/bundle").json()
        prepared = admin.post("/v1/ca/rotate/prepare")
        assert prepared.status_code == 200 and prepared.json()["next"] is not None
        after = admin.get("/v1/bundle").json()
        assert after["spiffe_sequence"] > before["spiffe_sequence"]
        assert len(after["keys"]) == len(before["keys"]) + 2
        activated = admin.post("/v1/ca/rotate/activate").json()
        assert activated["active"] == prepared.json()["next"]
        again = admin.post("/v1/ca/rotate/activate")
        assert again.status_code == 409
        assert again.json()["error"] == "nothing_prepared"
    # The server's own SVID is re-issued by the new signing CA; new clients still connect.
    time.sleep(1.0)
    with ca.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
    actions = {(line["action"], line["result"]) for line in ca.audit_lines()}
    assert {
        ("entry_add", "ok"),
        ("entry_list", "ok"),
        ("entry_remove", "ok"),
        ("rotate_prepare", "ok"),
        ("rotate_activate", "ok"),
    } <= actions


def test_cli_rotation_reaches_running_server(ca: CaProcess) -> None:
    with ca.client() as client:
        before = client.get("/v1/bundle").json()["spiffe_sequence"]
    result = ca.cli("ca", "rotate", "prepare")
    assert result.returncode == 0, result.stderr

    def sequence() -> int:
        with ca.client() as client:
            return int(client.get("/v1/bundle").json()["spiffe_sequence"])

    eventually(lambda: sequence() > before, 15, 0.2, "the prepared CA in the bundle")
    assert ca.cli("ca", "rotate", "activate").returncode == 0


def test_untrusted_client_cert_is_refused(ca: CaProcess, tmp_path: Path) -> None:
    from tests.support.certs import self_signed_ca

    cert, key = self_signed_ca("example.org")
    (tmp_path / "svid.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(httpx.HTTPError), ca.client(tmp_path) as client:
        client.get("/v1/entries")


async def test_node_agent_client_against_the_real_ca(ca: CaProcess, tmp_path: Path) -> None:
    from agent.ca_client import CaClient, node_selector
    from agent.errors import CaRejected
    from meshward.clock import SystemClock
    from meshward.spiffe import TrustDomain

    node = SpiffeId.parse("spiffe://example.org/node/n1")
    token = _token(ca, str(node))
    with ca.admin() as admin:
        delegated = admin.post(
            "/v1/entries",
            json={
                "spiffe_id": "spiffe://example.org/app",
                "selectors": [node_selector(node), "unix:uid:1000"],
            },
        ).json()
        admin.post(
            "/v1/entries",
            json={"spiffe_id": "spiffe://example.org/elsewhere", "selectors": ["unix:uid:1"]},
        )
        other = admin.post(
            "/v1/entries",
            json={
                "spiffe_id": "spiffe://example.org/n2app",
                "selectors": ["agent:id:spiffe://example.org/node/n2"],
            },
        ).json()
    client = CaClient(
        ca.url,
        TrustDomain("example.org"),
        ca.bundle_pem(),
        tmp_path / "agent",
        SystemClock(),
        lambda: token,
    )
    try:
        bundle = await client.fetch_bundle()
        assert bundle is not None
        assert client.node_id == node
        entries = await client.fetch_entries()
        assert [str(e.spiffe_id) for e in entries] == ["spiffe://example.org/app"]
        assert entries[0].selectors == {"unix:uid:1000"}
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        chain = await client.sign_x509(entries[0], csr, None)
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        assert openssl_verify(ca.bundle_pem(), pem, "sslclient", tmp_path / "v").returncode == 0
        with ca.client(None) as anonymous:
            assert anonymous.get("/v1/agent/entries").status_code == 401
        # An entry delegated to another node is refused (403) for this one.
        from agent.model import Entry as AgentEntry

        foreign = AgentEntry(other["id"], SpiffeId.parse(other["spiffe_id"]), frozenset())
        with pytest.raises(CaRejected) as err:
            await client.sign_x509(foreign, csr, None)
        assert err.value.status == 403
    finally:
        await client.aclose()
    assert delegated["id"]


def test_expired_peer_on_a_kept_alive_connection_is_anonymous(
    ca: CaProcess, tmp_path: Path
) -> None:
    csr, key = new_csr()
    token = _token(ca, "spiffe://example.org/short")
    _entry(ca, "spiffe://example.org/short")
    with ca.client() as client:
        body = client.post(
            "/v1/svid/x509", json={"csr": csr.decode(), "token": token, "ttl": 2}
        ).json()
    out = tmp_path / "short"
    out.mkdir()
    (out / "svid.pem").write_text(body["svid"])
    (out / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with ca.client(out) as client:
        assert client.post("/v1/svid/jwt", json={"audience": ["a"]}).status_code == 200
        time.sleep(3)  # the SVID expires; the connection stays open
        late = client.post("/v1/svid/jwt", json={"audience": ["a"]})
        assert late.status_code == 401 and late.json()["error"] == "no_credential"


# Last: it drains the anonymous callers' rate-limit bucket.
def test_rate_limit_and_metrics(ca: CaProcess) -> None:
    codes = []
    with ca.client() as client:
        for i in range(60):
            # The caller is the socket's address: a new X-Forwarded-For each
            # time does not make a new caller with a fresh bucket.
            spoofed = {"x-forwarded-for": f"10.9.{i}.1", "forwarded": f"for=10.9.{i}.1"}
            codes.append(
                client.post(
                    "/v1/svid/jwt",
                    json={"audience": ["x"], "token": "mwjt.nope"},
                    headers=spoofed,
                ).status_code
            )
        metrics = client.get("/metrics").text
    assert 429 in codes and set(codes) <= {401, 429}
    assert "meshward_ca_rate_limited_total" in metrics
    assert 'meshward_ca_issuance_total{kind="x509_svid",method="join_token",result="ok"}' in metrics
    assert "meshward_ca_signing_ca_not_after_seconds" in metrics
    assert "meshward_ca_svid_ttl_seconds_bucket" in metrics
    # Every label value the CA emits is the one docs/operations.md names.
    operations = (REPO / "docs" / "operations.md").read_text()
    row = next(line for line in operations.splitlines() if "`meshward_ca_issuance_total`" in line)
    for name, value in re.findall(r'(kind|method)="([^"]*)"', metrics):
        assert f"`{value}`" in row, f"{name}={value} is not documented"
