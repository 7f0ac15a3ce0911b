"""Several ``meshward ca serve`` replicas of one trust domain on one PostgreSQL."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.support.ca import CaProcess, ca_env, new_csr

__all__ = ["replica_env", "running_replicas", "wait_for_same_bundle", "workload_svid"]


def replica_env(database_url: str, replica: str, **extra: str) -> dict[str, str]:
    return ca_env(
        MESHWARD_CA__DATABASE_URL=database_url,
        MESHWARD_CA__REPLICA_ID=replica,
        MESHWARD_CA__ROTATE_CHECK_SECONDS="0.3",
        **extra,
    )


@contextmanager
def running_replicas(
    tmp_path: Path, database_url: str, count: int = 2, **extra: str
) -> Iterator[list[CaProcess]]:
    """``ca init`` on the database (as replica r0), then ``count`` replicas r0, r1, …

    Every replica's state directory gets the admin SVID ``ca admin login``
    wrote (the replicas share nothing else on disk).
    """
    procs = [
        CaProcess(tmp_path / f"r{i}", env=replica_env(database_url, f"r{i}", **extra))
        for i in range(count)
    ]
    init = procs[0].cli("ca", "init", "--trust-domain", "example.org")
    if init.returncode != 0:
        raise RuntimeError(f"ca init failed: {init.stderr}")
    login = procs[0].cli("ca", "admin", "login")
    if login.returncode != 0:
        raise RuntimeError(f"ca admin login failed: {login.stderr}")
    for proc in procs[1:]:
        shutil.copytree(procs[0].admin_dir, proc.admin_dir)
    try:
        for proc in procs:
            proc.start()
        wait_for_same_bundle(procs)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def wait_for_same_bundle(procs: list[CaProcess], timeout: float = 20.0) -> bytes:
    """Until every replica publishes the same bundle (each has seen the others)."""
    deadline = time.monotonic() + timeout
    while True:
        bundles = {p.bundle_pem() for p in procs if p.process is not None}
        if len(bundles) == 1:
            pem = bundles.pop()
            if pem.count(b"BEGIN CERTIFICATE") >= 1 + len(procs):
                return pem
        if time.monotonic() > deadline:
            raise TimeoutError("the replicas do not publish the same bundle")
        time.sleep(0.1)


def workload_svid(proc: CaProcess, spiffe_id: str, out: Path) -> Path:
    """An X.509-SVID for ``spiffe_id`` (an entry, a join token) in ``out``: svid.pem, key.pem."""
    with proc.admin() as admin:
        entry = admin.post("/v1/entries", json={"spiffe_id": spiffe_id, "selectors": ["k8s:ns:t"]})
        if entry.status_code != 201:
            raise RuntimeError(f"entry refused: {entry.status_code} {entry.text}")
        token = admin.post("/v1/join-tokens", json={"spiffe_id": spiffe_id}).json()["token"]
    csr, key = new_csr()
    with proc.client() as client:
        resp = client.post("/v1/svid/x509", json={"csr": csr.decode(), "token": token})
    if resp.status_code != 200:
        raise RuntimeError(f"issuance failed: {resp.status_code} {resp.text}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "svid.pem").write_text(resp.json()["svid"])
    (out / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out
