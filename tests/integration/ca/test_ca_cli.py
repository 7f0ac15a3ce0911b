"""``meshward ca …`` commands: init, issue, token, entries, restart, passphrase errors."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from cryptography import x509

from tests.support.ca import CaProcess, ca_env, openssl_verify, running_ca


def test_init_issue_token_entries(tmp_path: Path) -> None:
    proc = CaProcess(tmp_path / "state", env=ca_env())
    init = proc.cli("ca", "init", "--trust-domain", "example.org")
    assert init.returncode == 0, init.stderr
    assert proc.cli("ca", "init", "--trust-domain", "example.org").returncode == 2
    for name in ("root.key", "slot-1.key", "slot-1.jwt.key"):
        assert (tmp_path / "state/ca" / name).stat().st_mode & 0o777 == 0o600
    assert not proc.admin_dir.exists()  # no lasting plaintext admin key
    login = proc.cli("ca", "admin", "login")
    assert login.returncode == 0, login.stderr
    assert (proc.admin_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    admin = x509.load_pem_x509_certificates((proc.admin_dir / "svid.pem").read_bytes())[0]
    assert admin.not_valid_after_utc - admin.not_valid_before_utc <= dt.timedelta(
        hours=1, minutes=1
    )

    out = tmp_path / "svid"
    issued = proc.cli(
        "ca",
        "issue",
        "--spiffe-id",
        "spiffe://example.org/batch",
        "--out",
        str(out),
        "--ttl",
        "15m",
    )
    assert issued.returncode == 0, issued.stderr
    chain = (out / "svid.pem").read_bytes()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 15 * 60 + 60
    for purpose in ("sslclient", "sslserver"):
        assert (
            openssl_verify(
                (out / "bundle.pem").read_bytes(), chain, purpose, tmp_path / purpose
            ).returncode
            == 0
        )
    assert (
        proc.cli("ca", "issue", "--spiffe-id", "spiffe://other.org/x", "--out", str(out)).returncode
        == 2
    )
    assert proc.cli().returncode == 2

    token = proc.cli(
        "ca", "token", "create", "--spiffe-id", "spiffe://example.org/node", "--ttl", "10m"
    )
    assert token.returncode == 0
    assert re.fullmatch(r"mwjt\.[A-Za-z0-9_-]{43}\n", token.stdout)

    web = "spiffe://example.org/web"
    added = proc.cli(
        "ca",
        "entry",
        "add",
        "--spiffe-id",
        web,
        "--selector",
        "k8s:ns:prod",
        "--selector",
        "k8s:sa:web",
        "--x509-ttl",
        "30m",
    )
    assert added.returncode == 0, added.stderr
    entry = json.loads(added.stdout)
    assert entry["selectors"] == ["k8s:ns:prod", "k8s:sa:web"] and entry["x509_ttl"] == 1800
    listed = [json.loads(line) for line in proc.cli("ca", "entry", "list").stdout.splitlines()]
    assert {e["spiffe_id"] for e in listed} == {
        "spiffe://example.org/meshward/admin",
        "spiffe://example.org/web",
    }
    assert proc.cli("ca", "entry", "rm", entry["id"]).returncode == 0
    assert proc.cli("ca", "entry", "rm", entry["id"]).returncode == 1

    bundle = json.loads(proc.cli("ca", "bundle").stdout)
    assert bundle["spiffe_sequence"] == 1
    assert proc.cli("ca", "rotate", "activate").returncode == 2  # nothing prepared
    assert "prepared signing CA 2" in proc.cli("ca", "rotate", "prepare").stdout
    assert json.loads(proc.cli("ca", "bundle").stdout)["spiffe_sequence"] == 2


def test_restart_survival_and_passphrase_errors(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_ca(state) as ca, ca.admin() as admin:
        admin.post(
            "/v1/entries",
            json={"spiffe_id": "spiffe://example.org/kept", "selectors": ["k8s:ns:a"]},
        )
        bundle_before = admin.get("/v1/bundle").json()
    wrong = CaProcess(state, env={"MESHWARD_CA_PASSPHRASE": "not-the-passphrase"})
    result = wrong.cli("ca", "serve", "--addr", "127.0.0.1:1")
    assert result.returncode == 2 and "passphrase" in result.stderr.lower()
    assert CaProcess(state, env={}).cli("ca", "bundle").returncode == 2  # no passphrase at all

    (state / "ca" / "slot-1.key").chmod(0o644)
    result = CaProcess(state, env=ca_env()).cli("ca", "bundle")
    assert result.returncode == 2 and "0644" in result.stderr
    (state / "ca" / "slot-1.key").chmod(0o600)

    again = CaProcess(state, env=ca_env())
    again.start()
    try:
        with again.admin() as admin:
            assert admin.get("/v1/bundle").json() == bundle_before
            entries = admin.get("/v1/entries").json()["entries"]
            assert "spiffe://example.org/kept" in {e["spiffe_id"] for e in entries}
    finally:
        again.stop()
    import sqlite3

    with sqlite3.connect(state / "ca" / "ca.db") as db:
        actions = [row[0] for row in db.execute("SELECT action FROM audit ORDER BY id")]
    assert actions[:2] == ["entry_add", "x509_svid"] and actions.count("entry_add") == 2
