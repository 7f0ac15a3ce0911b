"""``meshward up``: the CA beside the PDP, the PDP trusting the CA's bundle."""

from __future__ import annotations

import json
import shutil
import ssl
from pathlib import Path

import httpx

from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle
from tests.support.cli import REPO
from tests.support.up import running_up


def test_up_runs_the_ca_and_the_pdp_trusts_it(tmp_path: Path) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    with running_up(tmp_path, cwd=tmp_path, state=tmp_path / ".meshward") as up:
        ca_port, http_port = up.ports.ca, up.ports.http
        state = up.state
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
    assert up.process.returncode == 0, up.output()
