"""Soak: concurrent issuance across a rotation; every SVID verifies afterwards."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.ca import new_csr, running_ca

THREADS = 12
PER_THREAD = 25


@pytest.mark.slow
def test_issuance_under_load_across_rotation(tmp_path: Path) -> None:
    with running_ca(
        tmp_path / "state", MESHWARD_CA__RATE_BURST="100000", MESHWARD_CA__RATE_PER_SECOND="100000"
    ) as ca:
        leaves: list[bytes] = []
        failures: list[int] = []
        lock = threading.Lock()

        workload = tmp_path / "workload"
        for args in (
            ("entry", "add", "--selector", "k8s:ns:soak"),
            ("issue", "--out", str(workload)),
        ):
            done = ca.cli("ca", *args, "--spiffe-id", "spiffe://example.org/soak")
            assert done.returncode == 0, done.stderr

        def worker() -> None:
            with ca.client(workload) as client:
                for _ in range(PER_THREAD):
                    resp = client.post("/v1/svid/x509", json={"csr": new_csr()[0].decode()})
                    with lock:
                        if resp.status_code != 200:
                            failures.append(resp.status_code)
                        else:
                            leaf = x509.load_pem_x509_certificates(resp.json()["svid"].encode())[0]
                            leaves.append(leaf.public_bytes(serialization.Encoding.PEM))

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(leaves) < THREADS * 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # rotate mid-run, after some SVIDs from the first CA
        with ca.admin() as admin:
            assert admin.post("/v1/ca/rotate/prepare").status_code == 200
            assert admin.post("/v1/ca/rotate/activate").status_code == 200
        for t in threads:
            t.join()
        assert failures == []
        assert len(leaves) == THREADS * PER_THREAD
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(ca.bundle_pem())
        files = []
        for i, leaf in enumerate(leaves):
            path = tmp_path / f"leaf{i}.pem"
            path.write_bytes(leaf)
            files.append(str(path))
        result = subprocess.run(
            ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(bundle), *files],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(": OK") == len(leaves)
        issuers = {x509.load_pem_x509_certificate(leaf).issuer for leaf in leaves}
        assert len(issuers) == 2  # both signing CAs issued during the run
