"""``meshward up``: the CA beside the PDP, the PDP trusting the CA's bundle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import httpx

from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle
from tests.support.cli import REPO, meshward_argv
from tests.support.net import free_port, wait_for_port


def test_up_runs_the_ca_and_the_pdp_trusts_it(tmp_path: Path) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    ca_port, grpc_port, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWARD_")}
    env.update(
        PYTHONPATH=str(REPO),
        MESHWARD_CA__ADDR=f"127.0.0.1:{ca_port}",
        MESHWARD_CONSOLE__ADDR=f"127.0.0.1:{free_port()}",
        MESHWARD_PDP__GRPC_ADDR=f"127.0.0.1:{grpc_port}",
        MESHWARD_PDP__HTTP_ADDR=f"127.0.0.1:{http_port}",
    )
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        meshward_argv("up"), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(ca_port, timeout=60)
        wait_for_port(http_port, timeout=60)
        state = tmp_path / ".meshward"
        doc = json.loads((state / "ca" / "bundle.json").read_text())
        bundle = SpiffeBundle.from_jwks(doc, TrustDomain("meshward.local"))
        assert bundle.jwt_authorities and bundle.x509_authorities
        ctx = ssl.create_default_context(cafile=str(state / "admin" / "bundle.pem"))
        ctx.load_cert_chain(state / "admin" / "svid.pem", state / "admin" / "key.pem")
        with httpx.Client(base_url=f"https://127.0.0.1:{ca_port}", verify=ctx) as ca:
            assert ca.get("/v1/bundle").json()["keys"] == doc["keys"]
            # JWT-SVIDs are bound to their destination: this one is for the "shop" host.
            token = ca.post("/v1/svid/jwt", json={"audience": ["shop"]}).json()["token"]
        headers = {"X-Original-Method": "GET", "X-Original-URI": "/", "Host": "shop"}
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as pdp:
            anonymous = pdp.get("/auth/nginx", headers=headers)
            forged = pdp.get(
                "/auth/nginx", headers={**headers, "Authorization": f"Bearer {token[:-4]}AAAA"}
            )
            svid = pdp.get("/auth/nginx", headers={**headers, "Authorization": f"Bearer {token}"})
        # A forged token is refused as unauthenticated; the CA's JWT-SVID authenticates.
        assert forged.status_code == 401
        assert svid.status_code in (200, 403)
        assert anonymous.status_code in (401, 403)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
