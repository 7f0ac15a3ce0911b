"""``meshward ca …`` on a PostgreSQL ``ca.database_url``: the same commands, never the password."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.ca import CaProcess
from tests.support.postgres import PostgresServer
from tests.support.replicas import replica_env


def test_commands_work_and_never_show_the_password(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    proc = CaProcess(tmp_path / "state", env=replica_env(postgres_url, "r0"))
    outputs: list[str] = []

    def cli(*args: str, code: int = 0) -> str:
        done = proc.cli(*args)
        outputs.extend((done.stdout, done.stderr))
        assert done.returncode == code, done.stderr
        return done.stdout

    assert "[redacted]" in cli("ca", "init", "--trust-domain", "example.org")
    cli("ca", "init", "--trust-domain", "example.org", code=2)  # the database holds a CA
    assert not (tmp_path / "state" / "ca" / "root.key").exists()  # keys live in the database
    entry = json.loads(cli("ca", "entry", "add", "--spiffe-id", "spiffe://example.org/web",
                           "--selector", "k8s:ns:web"))  # fmt: skip
    assert entry["id"] in cli("ca", "entry", "list")
    assert cli("ca", "token", "create", "--spiffe-id", "spiffe://example.org/node").startswith("mw")
    bundle = json.loads(cli("ca", "bundle"))
    assert len([k for k in bundle["keys"] if k["use"] == "x509-svid"]) == 2  # root, r0
    assert "prepared" in cli("ca", "rotate", "prepare")
    assert json.loads(cli("ca", "bundle"))["spiffe_sequence"] > bundle["spiffe_sequence"]
    status = json.loads(cli("ca", "status"))
    assert status["database"].startswith("postgresql://meshward:[redacted]@127.0.0.1:")

    # A wrong password, and a database that is not there: errors without the secret.
    wrong = postgres_url.replace(postgres.password, "not-the-password-xyz")
    proc.env["MESHWARD_CA__DATABASE_URL"] = wrong
    cli("ca", "entry", "list", code=2)
    proc.env["MESHWARD_CA__DATABASE_URL"] = postgres_url.replace(
        f":{postgres.port}/", ":1/"
    ).replace(postgres.password, "not-the-password-xyz")
    cli("ca", "entry", "list", code=2)
    for text in outputs:
        assert postgres.password not in text
        assert "not-the-password-xyz" not in text
