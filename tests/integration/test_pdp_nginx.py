"""Real nginx with ``auth_request`` (deploy/nginx/) in front of a small upstream."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.certs import pem
from tests.support.cli import REPO
from tests.support.nginx import Nginx, TlsFiles, nginx_server
from tests.support.pdp import PdpProcess, pdp_process
from tests.support.proxy import Target
from tests.support.upstream import echo_upstream

SHOP = "spiffe://meshward.local/ns/shop/sa"
FRONTEND = f"{SHOP}/frontend"
HOST = "catalog.shop.test"

POLICY = f"""
@id("frontend-reads-catalog-host")
permit (
  principal == Workload::"{FRONTEND}",
  action in Action::"read",
  resource == Service::"{HOST}"
);
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PdpProcess, Nginx]]:
    work: Path = tmp_path_factory.mktemp("nginx")
    policies = work / "policies"
    policies.mkdir()
    for name in ("schema.cedarschema", "entities.json"):
        shutil.copy(REPO / "policies" / name, policies / name)
    (policies / "catalog.cedar").write_text(POLICY)
    with pdp_process(work / "pdp", policies=policies) as pdp, echo_upstream() as upstream:
        now = dt.datetime.now(dt.UTC)
        server = pdp.pki.leaf(
            ["spiffe://meshward.local/nginx"],
            not_before=now - dt.timedelta(minutes=5),
            not_after=now + dt.timedelta(hours=1),
        )
        (work / "server.pem").write_text(pem(*pdp.pki.chain(server)))
        (work / "server.key").write_text(server.key_pem)
        (work / "ca.pem").write_text(pdp.pki.bundle_pem)
        target = Target(f"127.0.0.1:{pdp.http_port}", upstream.port, HOST)
        tls = TlsFiles(work / "server.pem", work / "server.key", work / "ca.pem")
        with nginx_server(work / "nginx", target, tls) as nginx:
            yield pdp, nginx


def _svid(pdp: PdpProcess, workload: str) -> str:
    return pdp.svid_key.sign({"sub": workload, "aud": HOST, "exp": int(time.time()) + 300})


def test_no_credentials_401(stack) -> None:
    _, nginx = stack
    response = httpx.get(f"http://127.0.0.1:{nginx.port}/items", headers={"host": HOST})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_permitted_reaches_upstream_with_principal(stack) -> None:
    pdp, nginx = stack
    response = httpx.get(
        f"http://127.0.0.1:{nginx.port}/items?page=2",
        headers={
            "host": HOST,
            "authorization": f"Bearer {_svid(pdp, FRONTEND)}",
            "x-meshward-principal": 'User::"forged"',
        },
    )
    assert response.status_code == 200
    seen = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert response.json()["path"] == "/items?page=2"
    assert seen["x-meshward-principal"] == f'Workload::"{FRONTEND}"'
    assert len(seen["x-meshward-decision-id"]) == 32


def test_forbidden_403(stack) -> None:
    pdp, nginx = stack
    token = _svid(pdp, f"{SHOP}/orders")
    for method, headers in [
        ("GET", {"authorization": f"Bearer {token}"}),
        ("DELETE", {"authorization": f"Bearer {_svid(pdp, FRONTEND)}"}),
    ]:
        response = httpx.request(
            method, f"http://127.0.0.1:{nginx.port}/items", headers={"host": HOST, **headers}
        )
        assert response.status_code == 403, method


def test_client_cannot_forge_forwarded_certificate(stack) -> None:
    _, nginx = stack
    response = httpx.get(
        f"http://127.0.0.1:{nginx.port}/items",
        headers={"host": HOST, "x-forwarded-client-cert": f"URI={FRONTEND}"},
    )
    assert response.status_code == 401


def test_mtls_client_certificate(stack, tmp_path: Path) -> None:
    pdp, nginx = stack
    now = dt.datetime.now(dt.UTC)
    # Signed by the root itself: nginx forwards only the leaf ($ssl_client_escaped_cert).
    leaf = pdp.pki.leaf(
        path="/ns/shop/sa/frontend",
        issuer=pdp.pki.root,
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(hours=1),
    )
    (tmp_path / "client.pem").write_text(pem(leaf.cert))
    (tmp_path / "client.key").write_text(leaf.key_pem)
    context = ssl.create_default_context()
    context.check_hostname = False  # the client authenticates; the server's name is not the point
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
    with httpx.Client(verify=context) as client:
        response = client.get(f"https://127.0.0.1:{nginx.tls_port}/items", headers={"host": HOST})
        assert response.status_code == 200
        seen = {k.lower(): v for k, v in response.json()["headers"].items()}
        assert seen["x-meshward-principal"] == f'Workload::"{FRONTEND}"'
        assert "x-forwarded-client-cert" not in seen
        anonymous = httpx.get(
            f"https://127.0.0.1:{nginx.tls_port}/items", headers={"host": HOST}, verify=False
        )
        assert anonymous.status_code == 401
