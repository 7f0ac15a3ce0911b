"""Attacks on the CA's identity rules: one row per hole, each must stay shut.

Driven through the real ``meshward ca serve`` (HTTPS on loopback), the
``meshward ca …`` commands, raw TLS sockets for the body attacks, and
checked with independent verifiers: ``openssl verify`` and py-spiffe.
Refusals are asserted on their status and ``code``, never on message text.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe import JwtBundle, JwtSvid, X509Bundle, X509Svid
from spiffe import TrustDomain as PyTrustDomain

from ca.state import CaFiles
from meshward.jwt_svid import InvalidJwtSvid, validate_jwt_svid
from meshward.selectors import node_selector
from meshward.spiffe import SpiffeId, TrustDomain
from meshward.spiffe_bundle import JWT_SVID_USE, SpiffeBundle
from tests.support.ca import PASSPHRASE, CaProcess, ca_env, new_csr, openssl_verify, running_ca
from tests.support.net import free_port

TD = TrustDomain("example.org")
PY_TD = PyTrustDomain("example.org")
NODE = "spiffe://example.org/meshward/node/attack"
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaProcess]:
    with running_ca(
        tmp_path_factory.mktemp("ca"),
        MESHWARD_CA__RATE_BURST="1000",
        MESHWARD_CA__RATE_PER_SECOND="1000",
        MESHWARD_CA__BODY_TIMEOUT=str(BODY_TIMEOUT),
        MESHWARD_LOG_LEVEL="debug",
    ) as proc:
        yield proc


# -- helpers ---------------------------------------------------------------------------


def _admin(ca: CaProcess, method: str, path: str, body: Any = None) -> httpx.Response:
    with ca.admin() as admin:
        return admin.request(method, path, json=body)


def _entry(ca: CaProcess, spiffe_id: str, *selectors: str, **fields: Any) -> str:
    body = {"spiffe_id": spiffe_id, "selectors": list(selectors or ("k8s:ns:x",)), **fields}
    resp = _admin(ca, "POST", "/v1/entries", body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _svid(ca: CaProcess, spiffe_id: str, out: Path, **extra: Any) -> dict[str, Any]:
    """Attest with a join token for ``spiffe_id``; write svid.pem and key.pem to ``out``."""
    token = _admin(ca, "POST", "/v1/join-tokens", {"spiffe_id": spiffe_id}).json()["token"]
    return _post_csr(ca, out, None, token=token, **extra)


def _post_csr(
    ca: CaProcess, out: Path, cert_dir: Path | None, path: str = "/v1/svid/x509", **extra: Any
) -> dict[str, Any]:
    csr, key = new_csr()
    with ca.client(cert_dir) as client:
        resp = client.post(path, json={"csr": csr.decode(), **extra})
    doc: dict[str, Any] = {"status": resp.status_code, **resp.json()}
    if resp.status_code == 200:
        out.mkdir(parents=True, exist_ok=True)
        (out / "svid.pem").write_text(doc["svid"])
        (out / "key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return doc


def _renew(ca: CaProcess, cert_dir: Path, **extra: Any) -> dict[str, Any]:
    return _post_csr(ca, cert_dir.with_name(cert_dir.name + "-renewed"), cert_dir, **extra)


def _jwt(ca: CaProcess, cert_dir: Path, **extra: Any) -> httpx.Response:
    with ca.client(cert_dir) as client:
        return client.post("/v1/svid/jwt", json={"audience": ["orders"], **extra})


def _verifies(ca: CaProcess, chain_pem: str, workdir: Path, key_pem: bytes | None = None) -> None:
    """openssl verifies the chain against the CA's bundle; py-spiffe parses it as an SVID."""
    bundle_pem = ca.bundle_pem()
    for purpose in ("sslclient", "sslserver"):
        result = openssl_verify(bundle_pem, chain_pem.encode(), purpose, workdir / purpose)
        assert result.returncode == 0, result.stderr
    roots = b"".join(
        c.public_bytes(serialization.Encoding.DER)
        for c in x509.load_pem_x509_certificates(bundle_pem)
    )
    assert X509Bundle.parse_raw(PY_TD, roots).x509_authorities
    if key_pem is not None:
        svid = X509Svid.parse(chain_pem.encode(), key_pem)
        leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
        assert svid.leaf.serial_number == leaf.serial_number


def _raw_tls(ca: CaProcess) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca.admin_dir / "bundle.pem"))
    raw = socket.create_connection(("127.0.0.1", ca.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_all(sock: ssl.SSLSocket, limit: float) -> bytes:
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


# -- rows --------------------------------------------------------------------------------


def test_renewal_after_entry_deletion_is_refused(ca: CaProcess, tmp_path: Path) -> None:
    sid = "spiffe://example.org/attack/deleted"
    entry_id = _entry(ca, sid)
    issued = _svid(ca, sid, tmp_path / "w")
    assert issued["status"] == 200
    key = (tmp_path / "w" / "key.pem").read_bytes()
    _verifies(ca, issued["svid"], tmp_path / "w" / "verify", key)
    assert _renew(ca, tmp_path / "w")["status"] == 200
    assert _jwt(ca, tmp_path / "w").status_code == 200
    # Its join token made it a node too; deleting its last entry revokes that as well.
    assert ca.cli("ca", "entry", "rm", entry_id).returncode == 0
    refused = _renew(ca, tmp_path / "w")
    assert refused["status"] == 403 and refused["code"] == "agent_evicted"
    assert _jwt(ca, tmp_path / "w").json()["code"] in ("agent_evicted", "no_entry")


def test_renewal_of_a_workload_whose_entry_is_deleted(ca: CaProcess, tmp_path: Path) -> None:
    sid = "spiffe://example.org/attack/workload"
    entry_id = _entry(ca, sid)
    out = tmp_path / "w"
    done = ca.cli("ca", "issue", "--spiffe-id", sid, "--out", str(out), "--ttl", "10m")
    assert done.returncode == 0, done.stderr
    assert _renew(ca, out)["status"] == 200
    assert ca.cli("ca", "entry", "rm", entry_id).returncode == 0
    refused = _renew(ca, out)  # immediately: no sync delay at the CA
    assert refused["status"] == 403 and refused["code"] == "no_entry"


def test_jwt_for_a_deleted_entry_is_refused(ca: CaProcess, tmp_path: Path) -> None:
    sid = "spiffe://example.org/attack/jwt"
    entry_id = _entry(ca, sid)
    out = tmp_path / "w"
    assert ca.cli("ca", "issue", "--spiffe-id", sid, "--out", str(out)).returncode == 0
    ok = _jwt(ca, out)
    assert ok.status_code == 200
    doc = json.loads(httpx.get(f"{ca.url}/v1/bundle", verify=ca.ssl_context()).text)
    jwt_only = {"keys": [k for k in doc["keys"] if k["use"] == JWT_SVID_USE]}
    svid = JwtSvid.parse_and_validate(
        ok.json()["token"], JwtBundle.parse(PY_TD, json.dumps(jwt_only).encode()), {"orders"}
    )
    assert str(svid.spiffe_id) == sid
    assert _admin(ca, "DELETE", f"/v1/entries/{entry_id}").status_code == 204
    refused = _jwt(ca, out)
    assert refused.status_code == 403 and refused.json()["code"] == "no_entry"


def test_ttl_field_cannot_stretch_a_renewal(ca: CaProcess, tmp_path: Path) -> None:
    sid = "spiffe://example.org/attack/stretch"
    _entry(ca, sid, x509_ttl=900)
    out = tmp_path / "w"
    assert ca.cli("ca", "issue", "--spiffe-id", sid, "--out", str(out)).returncode == 0
    renewed = _renew(ca, out, ttl=86400)
    assert renewed["status"] == 200
    leaf = x509.load_pem_x509_certificates(renewed["svid"].encode())[0]
    life = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert life <= dt.timedelta(seconds=900)
    renewed_key = (tmp_path / "w-renewed" / "key.pem").read_bytes()
    _verifies(ca, renewed["svid"], tmp_path / "verify", renewed_key)
    # A default entry (no TTL of its own) grants the CA default, 1 h, not the 24 h maximum.
    plain = "spiffe://example.org/attack/stretch-default"
    _entry(ca, plain)
    out2 = tmp_path / "w2"
    assert ca.cli("ca", "issue", "--spiffe-id", plain, "--out", str(out2)).returncode == 0
    leaf2 = x509.load_pem_x509_certificates(_renew(ca, out2, ttl=86400)["svid"].encode())[0]
    assert leaf2.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)


def test_evicted_agent_cannot_renew_nor_serve_its_workloads(ca: CaProcess, tmp_path: Path) -> None:
    workload = "spiffe://example.org/attack/on-node"
    entry_id = _entry(ca, workload, node_selector(SpiffeId.parse(NODE)), "unix:uid:4242")
    node_dir = tmp_path / "node"
    assert _svid(ca, NODE, node_dir)["status"] == 200
    listed = [json.loads(line) for line in ca.cli("ca", "agent", "list").stdout.splitlines()]
    assert any(a["spiffe_id"] == NODE and not a["evicted"] for a in listed)
    with ca.client(node_dir) as node:
        assert node.get("/v1/agent/entries").status_code == 200
        csr = new_csr()[0].decode()
        ok = node.post("/v1/agent/svid/x509", json={"csr": csr, "entry_id": entry_id})
        assert ok.status_code == 200
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "svid.pem").write_text(ok.json()["svid"])
    # (the workload's key stays with the agent; it renews through the agent only)

    evicted = ca.cli("ca", "agent", "evict", NODE)
    assert evicted.returncode == 0 and json.loads(evicted.stdout)["evicted"] is True
    shown = ca.cli("ca", "agent", "show", NODE)
    assert shown.returncode == 0 and json.loads(shown.stdout)["evicted"] is True
    assert _renew(ca, node_dir)["code"] == "agent_evicted"
    with ca.client(node_dir) as node:
        for method, path, body in (
            ("GET", "/v1/agent/entries", None),
            ("POST", "/v1/agent/svid/x509", {"csr": new_csr()[0].decode(), "entry_id": entry_id}),
            ("POST", "/v1/agent/svid/jwt", {"entry_id": entry_id, "audience": ["orders"]}),
        ):
            resp = node.request(method, path, json=body)
            assert resp.status_code == 403 and resp.json()["code"] == "agent_evicted", path
    # A fresh join token for the same node ID does not bring it back.
    again = _svid(ca, NODE, tmp_path / "again")
    assert again["status"] == 403 and again["code"] == "agent_evicted"
    api = _admin(ca, "GET", f"/v1/agents?spiffe_id={NODE}")
    assert api.status_code == 200 and api.json()["evicted"] is True
    assert ca.cli("ca", "agent", "show", "spiffe://example.org/nobody").returncode == 1


def test_no_plaintext_admin_key_after_init(tmp_path: Path) -> None:
    proc = CaProcess(tmp_path / "state", env=ca_env())
    assert proc.cli("ca", "init", "--trust-domain", "example.org").returncode == 0
    keys = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    for path in keys:
        data = path.read_bytes()
        assert b"BEGIN PRIVATE KEY" not in data and b"BEGIN EC PRIVATE KEY" not in data, path
    no_passphrase = CaProcess(tmp_path / "state", env={})
    assert no_passphrase.cli("ca", "admin", "login").returncode == 2
    assert not (tmp_path / "state" / "admin").exists()
    assert proc.cli("ca", "admin", "login").returncode == 0
    leaf = x509.load_pem_x509_certificates((proc.admin_dir / "svid.pem").read_bytes())[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(hours=1, minutes=1)


def test_admin_svid_cannot_be_renewed(ca: CaProcess, tmp_path: Path) -> None:
    refused = _renew(ca, ca.admin_dir)
    assert refused["status"] == 403 and refused["code"] == "admin_needs_login"


def test_a_join_token_for_an_admin_id_gets_no_admin_svid(ca: CaProcess, tmp_path: Path) -> None:
    # An admin X.509-SVID comes only from `ca admin login`; a join token for the admin
    # ID (or any other attestation of it) must not be a second door to the admin API.
    refused = _svid(ca, "spiffe://example.org/meshward/admin", tmp_path / "admin-by-token")
    assert refused["status"] == 403 and refused["code"] == "admin_needs_login"


def test_an_admin_entry_delegated_to_a_node_gets_the_node_no_admin_svid(
    ca: CaProcess, tmp_path: Path
) -> None:
    node = "spiffe://example.org/meshward/node/admin-thief"
    node_dir = tmp_path / "node"
    assert _svid(ca, node, node_dir)["status"] == 200
    admin_id = "spiffe://example.org/attack/second-admin"
    entry_id = _entry(ca, admin_id, node_selector(SpiffeId.parse(node)), admin=True)
    refused = _post_csr(
        ca, tmp_path / "stolen", node_dir, path="/v1/agent/svid/x509", entry_id=entry_id
    )
    assert refused["status"] == 403 and refused["code"] == "admin_needs_login"


@pytest.mark.parametrize("ttl", ["1", "299s", "4m"])
def test_minimum_ttl_through_the_cli(ca: CaProcess, ttl: str) -> None:
    done = ca.cli("ca", "entry", "add", "--spiffe-id", "spiffe://example.org/attack/short",
                  "--selector", "k8s:ns:x", "--x509-ttl", ttl)  # fmt: skip
    assert done.returncode == 2 and "at least 300 seconds" in done.stderr


def test_minimum_ttl_through_the_api(ca: CaProcess, tmp_path: Path) -> None:
    sid = "spiffe://example.org/attack/min"
    _entry(ca, sid)
    out = tmp_path / "w"
    assert ca.cli("ca", "issue", "--spiffe-id", sid, "--out", str(out)).returncode == 0
    refused = _renew(ca, out, ttl=1)
    assert refused["status"] == 400 and refused["code"] == "ttl_too_short"
    short_jwt = _jwt(ca, out, ttl=5)
    assert short_jwt.status_code == 400 and short_jwt.json()["code"] == "ttl_too_short"
    entry = _admin(ca, "POST", "/v1/entries", {"spiffe_id": sid, "selectors": ["k8s:ns:y"],
                                               "x509_ttl": 1})  # fmt: skip
    assert entry.status_code == 400 and entry.json()["code"] == "ttl_too_short"


def test_deep_json_is_a_400(ca: CaProcess) -> None:
    with ca.client() as client:
        resp = client.post(
            "/v1/svid/x509",
            content=b"[" * 30_000 + b"]" * 30_000,
            headers={"content-type": "application/json"},
        )
    assert resp.status_code == 400 and resp.json()["code"] == "json_too_deep"


def test_false_content_length_gets_408_and_the_connection_closes(ca: CaProcess) -> None:
    with _raw_tls(ca) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/svid/x509 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"
        )
        answer = _read_all(sock, BODY_TIMEOUT + 10)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b'"code":"body_timeout"' in answer
    assert elapsed < BODY_TIMEOUT + 5  # and the server closed it (recv saw the end)


def test_disconnect_mid_body_is_debug_without_traceback(ca: CaProcess) -> None:
    assert ca.log is not None
    before = len(ca.log.read_text().splitlines())
    with _raw_tls(ca) as sock:
        sock.sendall(
            b"POST /v1/svid/jwt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"aud'
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        lines = ca.log.read_text().splitlines()[before:]
        records = [json.loads(x) for x in lines if x.startswith("{")]
        if any("disconnected" in r["msg"] for r in records):
            break
        time.sleep(0.1)
    mine = [r for r in records if "disconnected" in r["msg"]]
    assert mine and all(r["level"] == "debug" and "exc" not in r for r in mine)
    assert not [r for r in records if r["level"] == "error" or "exc" in r]


def test_at_jwt_signed_with_the_cas_own_key_is_refused(ca: CaProcess) -> None:
    """typ at+jwt (JWT-SVID §2.3): refused by meshward's validator and by py-spiffe."""
    authority = CaFiles(ca.state_dir / "ca").load(PASSPHRASE.encode())
    slot = authority.active
    claims = {"sub": "spiffe://example.org/web", "aud": ["orders"],
              "exp": int(time.time()) + 120, "iat": int(time.time())}  # fmt: skip
    bundle = SpiffeBundle.from_jwks(
        httpx.get(f"{ca.url}/v1/bundle", verify=ca.ssl_context()).content, TD
    )
    keys = bundle.jwt_authorities
    py_bundle = JwtBundle.parse(
        PY_TD,
        json.dumps(
            {"keys": [k for k in bundle.to_jwks()["keys"] if k["use"] == JWT_SVID_USE]}
        ).encode(),
    )
    now = dt.datetime.now(dt.UTC)
    for typ, ok in (("JWT", True), ("at+jwt", False), ("application/at+jwt", False)):
        token = jwt.encode(claims, slot.jwt_key, algorithm="ES256",
                           headers={"kid": slot.jwt_kid, "typ": typ})  # fmt: skip
        try:
            validate_jwt_svid(token, lambda td: keys, ["orders"], now)
            ours = True
        except InvalidJwtSvid as exc:
            assert exc.reason == "bad_typ"
            ours = False
        try:
            JwtSvid.parse_and_validate(token, py_bundle, {"orders"})
            theirs = True
        except Exception:  # py-spiffe raises several unrelated types
            theirs = False
        assert (ours, theirs) == (ok, ok), typ


def test_admin_cli_uses_the_admin_svid_and_says_when_it_is_missing(
    ca: CaProcess, tmp_path: Path
) -> None:
    node = "spiffe://example.org/meshward/node/remote"
    assert _svid(ca, node, tmp_path / "node")["status"] == 200
    listed = ca.cli("ca", "agent", "list", "--ca-url", ca.url)
    assert listed.returncode == 0, listed.stderr
    assert node in {json.loads(line)["spiffe_id"] for line in listed.stdout.splitlines()}
    evicted = ca.cli("ca", "agent", "evict", node, "--ca-url", ca.url)
    assert evicted.returncode == 0 and json.loads(evicted.stdout)["evicted"] is True
    shown = ca.cli("ca", "agent", "show", node, "--ca-url", ca.url)
    assert json.loads(shown.stdout)["evicted"] is True
    missing = ca.cli("ca", "agent", "show", "spiffe://example.org/nobody", "--ca-url", ca.url)
    assert missing.returncode == 1
    # Several replicas: an unreachable one is skipped, none reachable is one clear error.
    dead = f"https://127.0.0.1:{free_port()}"
    failed_over = ca.cli("ca", "agent", "list", "--ca-url", f"{dead},{ca.url}")
    assert failed_over.returncode == 0, failed_over.stderr
    assert node in {json.loads(line)["spiffe_id"] for line in failed_over.stdout.splitlines()}
    unreachable = ca.cli("ca", "agent", "list", "--ca-url", dead)
    assert unreachable.returncode == 2 and "cannot reach the CA" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    # Without the admin SVID the command says what to run (and the CA is not asked).
    elsewhere = CaProcess(tmp_path / "empty-state", env=ca.env)
    gone = elsewhere.cli("ca", "agent", "list", "--ca-url", ca.url)
    assert gone.returncode == 2 and "meshward ca admin login" in gone.stderr
