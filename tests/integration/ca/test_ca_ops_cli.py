"""Day-to-day CA commands as an operator types them: status, entry show/update with
selector checks, token list/revoke, jwt mint, svid inspect, audit tail --follow."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.jwt_validate import validate_jwt_svid
from agent.model import Bundle
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle
from tests.support.ca import CaProcess, ca_env
from tests.support.cli import REPO, meshward_argv, meshward_env

TD = "example.org"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaProcess]:
    proc = CaProcess(tmp_path_factory.mktemp("ca-ops") / "state", env=ca_env())
    assert proc.cli("ca", "init", "--trust-domain", TD).returncode == 0
    yield proc


def test_status_names_the_cas_rotation_and_counts(ca: CaProcess) -> None:
    result = ca.cli("ca", "status")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["trust_domain"] == TD
    assert status["signing_ca"]["id"] == 1 and status["next_signing_ca"] is None
    assert status["rotation"]["stage"] == "steady"
    assert status["counts"]["entries"] >= 1
    assert status["database"].endswith("ca.db")
    assert ca.cli("ca", "rotate", "prepare").returncode == 0
    prepared = json.loads(ca.cli("ca", "status").stdout)
    assert prepared["next_signing_ca"]["id"] == 2
    assert prepared["rotation"]["stage"].startswith("prepared")


def test_a_mistyped_selector_is_refused_with_the_known_types(ca: CaProcess) -> None:
    bad = ca.cli(
        "ca", "entry", "add", "--spiffe-id", f"spiffe://{TD}/web",
        "--selector", "k8s:namespace:shop",
    )  # fmt: skip
    assert bad.returncode == 2
    assert "k8s:namespace:shop" in bad.stderr and "k8s:ns:" in bad.stderr


def test_entry_show_and_update(ca: CaProcess) -> None:
    added = ca.cli(
        "ca", "entry", "add", "--spiffe-id", f"spiffe://{TD}/web", "--selector", "k8s:ns:shop",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    entry_id = json.loads(added.stdout)["id"]
    shown = json.loads(ca.cli("ca", "entry", "show", entry_id).stdout)
    assert shown["selectors"] == ["k8s:ns:shop"]
    updated = ca.cli(
        "ca", "entry", "update", entry_id, "--selector", "k8s:ns:shop", "--selector", "k8s:sa:web",
        "--x509-ttl", "10m",
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    shown = json.loads(ca.cli("ca", "entry", "show", entry_id).stdout)
    assert sorted(shown["selectors"]) == ["k8s:ns:shop", "k8s:sa:web"]
    assert shown["x509_ttl"] == 600 and shown["spiffe_id"] == f"spiffe://{TD}/web"
    refused = ca.cli("ca", "entry", "update", entry_id, "--selector", "k8s:pod:x")
    assert refused.returncode == 2
    assert ca.cli("ca", "entry", "show", "nope").returncode == 1


def test_token_list_and_revoke(ca: CaProcess) -> None:
    token = ca.cli("ca", "token", "create", "--spiffe-id", f"spiffe://{TD}/node/n1").stdout.strip()
    listed = [json.loads(line) for line in ca.cli("ca", "token", "list").stdout.splitlines()]
    mine = [t for t in listed if t["spiffe_id"] == f"spiffe://{TD}/node/n1"]
    assert len(mine) == 1 and mine[0]["state"] == "unused"
    assert token not in ca.cli("ca", "token", "list").stdout
    revoked = ca.cli("ca", "token", "revoke", mine[0]["id"])
    assert revoked.returncode == 0, revoked.stderr
    again = [json.loads(line) for line in ca.cli("ca", "token", "list").stdout.splitlines()]
    assert [t["state"] for t in again if t["id"] == mine[0]["id"]] == ["used"]
    assert ca.cli("ca", "token", "revoke", token).returncode == 1


def test_jwt_mint_validates_against_the_bundle(ca: CaProcess) -> None:
    minted = ca.cli(
        "ca", "jwt", "mint", "--spiffe-id", f"spiffe://{TD}/batch", "--audience", "orders",
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    bundle = SpiffeBundle.from_jwks(ca.cli("ca", "bundle").stdout, TrustDomain(TD))
    spiffe_id, claims = validate_jwt_svid(
        minted.stdout.strip(), "orders", Bundle(bundle), dt.datetime.now(dt.UTC)
    )
    assert str(spiffe_id) == f"spiffe://{TD}/batch" and claims["aud"] in ("orders", ["orders"])
    foreign = ca.cli("ca", "jwt", "mint", "--spiffe-id", "spiffe://other.org/x", "--audience", "a")
    assert foreign.returncode == 2


def test_svid_inspect(ca: CaProcess, tmp_path: Path) -> None:
    out = tmp_path / "svid"
    issued = ca.cli("ca", "issue", "--spiffe-id", f"spiffe://{TD}/batch", "--out", str(out))
    assert issued.returncode == 0, issued.stderr
    result = ca.cli("ca", "svid", "inspect", str(out / "svid.pem"))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["spiffe_id"] == f"spiffe://{TD}/batch" and info["valid"] is True
    assert "signing CA" in info["issuer"] and info["expires_in_seconds"] > 0
    other = CaProcess(tmp_path / "other", env=ca_env())
    assert other.cli("ca", "init", "--trust-domain", TD).returncode == 0
    (tmp_path / "other.pem").write_text(other.cli("ca", "bundle", "--pem").stdout)
    foreign = ca.cli(
        "ca", "svid", "inspect", str(out / "svid.pem"), "--bundle", str(tmp_path / "other.pem")
    )
    assert foreign.returncode == 1
    assert json.loads(foreign.stdout)["problem"] == "chain_untrusted"
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert ca.cli("ca", "svid", "inspect", str(tmp_path / "junk.pem")).returncode == 2
    missing = ca.cli(
        "ca", "svid", "inspect", str(out / "svid.pem"), "--bundle", str(tmp_path / "none.pem")
    )
    assert missing.returncode == 2


def test_audit_tail_and_follow(ca: CaProcess) -> None:
    tail = ca.cli("ca", "audit", "tail", "-n", "2")
    assert tail.returncode == 0
    assert len([json.loads(line) for line in tail.stdout.splitlines()]) == 2
    env = meshward_env(ca_env())
    follower = subprocess.Popen(
        meshward_argv("--state-dir", str(ca.state_dir), "ca", "audit", "tail", "-n", "1",
                      "--follow", "--interval", "0.2"),
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        follower.stdout.readline()  # the last record
        time.sleep(0.5)
        ca.cli("ca", "token", "create", "--spiffe-id", f"spiffe://{TD}/node/followed")
        line = json.loads(follower.stdout.readline())
        assert line["action"] == "token_create" and line["spiffe_id"].endswith("/followed")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        if follower.stdout is not None:
            follower.stdout.close()


def test_issue_warns_when_the_key_would_land_in_a_git_work_tree(
    ca: CaProcess, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    args = ("ca", "issue", "--spiffe-id", f"spiffe://{TD}/batch", "--out")
    warned = ca.cli(*args, str(repo / "svid"))
    assert warned.returncode == 0, warned.stderr
    assert "warning" in warned.stderr and str(repo) in warned.stderr
    (repo / ".gitignore").write_text("svid/\n")
    quiet = ca.cli(*args, str(repo / "svid"))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    outside = ca.cli(*args, str(tmp_path / "elsewhere"))
    assert "warning" not in outside.stderr


def test_ca_serve_on_a_taken_port_is_one_line_and_exit_2(ca: CaProcess) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = ca.cli("ca", "serve", "--addr", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 2
    assert "CA API on" not in result.stdout  # no success line before binding
    lines = result.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in lines[-1] and "--addr" in lines[-1]
