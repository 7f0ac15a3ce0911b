"""The HTTP adapters of a real ``meshward pdp serve --workers 2``, then a graceful stop."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.pdp import ISSUER, PdpProcess, pdp_process

SHOP = "spiffe://meshward.local/ns/shop/sa"
FRONTEND = f"{SHOP}/frontend"
CATALOG = f"{SHOP}/catalog"
# What deploy/envoy/sidecar-http.yaml adds to every check: the fixed destination.
SIDECAR = {"x-meshward-destination": "shop"}


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdpProcess]:
    workdir: Path = tmp_path_factory.mktemp("pdp-http")
    with pdp_process(workdir, "--workers", "2") as proc:
        yield proc


def _token(pdp: PdpProcess, sub: str = f"{SHOP}/orders") -> str:
    return pdp.svid_key.sign({"sub": sub, "aud": "shop", "exp": int(time.time()) + 300})


def _user(pdp: PdpProcess, groups: list[str]) -> str:
    return pdp.idp_key.sign(
        {
            "iss": ISSUER,
            "sub": "dave",
            "aud": "shop",
            "exp": int(time.time()) + 300,
            "groups": groups,
        }
    )


def test_health_and_readiness(pdp: PdpProcess) -> None:
    assert httpx.get(f"{pdp.http_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{pdp.http_url}/readyz").json()
    assert ready["status"] == "ready"
    assert ready["policy_version"].startswith("sha256:")


def test_envoy_http_service(pdp: PdpProcess) -> None:
    url = f"{pdp.http_url}/ext_authz/items?x=1"
    allowed = httpx.get(
        url, headers={**SIDECAR, "authorization": f"Bearer {_user(pdp, ['staff'])}"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["x-meshward-principal"] == f'User::"{ISSUER}|dave"'
    denied = httpx.request(
        "DELETE", url, headers={**SIDECAR, "authorization": f"Bearer {_user(pdp, ['staff'])}"}
    )
    assert denied.status_code == 403
    assert denied.json()["decision_id"] == denied.headers["x-meshward-decision-id"]
    anonymous = httpx.get(url, headers=SIDECAR)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    # Any method reaches the PDP: staff may only read, admins may do anything.
    for groups, status in ((["staff"], 403), (["admins"], 200)):
        custom = httpx.request(
            "PROPFIND",
            url,
            headers={**SIDECAR, "authorization": f"Bearer {_user(pdp, groups)}"},
        )
        assert custom.status_code == status, groups


def test_envoy_http_service_resource_is_never_the_clients_host(pdp: PdpProcess) -> None:
    url = f"{pdp.http_url}/ext_authz/items"
    staff = {"authorization": f"Bearer {_user(pdp, ['staff'])}"}
    # No pinned destination: denied, whatever Host says.
    unpinned = httpx.get(url, headers={**staff, "host": "shop"})
    assert unpinned.status_code == 403
    # The pinned destination decides, not the Host the client picked.
    assert httpx.get(url, headers={**staff, **SIDECAR, "host": "other"}).status_code == 200
    pinned_elsewhere = {**staff, "x-meshward-destination": "other", "host": "shop"}
    assert httpx.get(url, headers=pinned_elsewhere).status_code == 403


def test_traefik_forward_auth(pdp: PdpProcess) -> None:
    headers = {
        "x-forwarded-method": "GET",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "shop",
        "x-forwarded-uri": "/healthz",
    }
    assert httpx.get(f"{pdp.http_url}/auth/traefik", headers=headers).status_code == 200
    private = {**headers, "x-forwarded-uri": "/orders"}
    assert httpx.get(f"{pdp.http_url}/auth/traefik", headers=private).status_code == 401
    missing = {"x-forwarded-host": "shop"}
    assert httpx.get(f"{pdp.http_url}/auth/traefik", headers=missing).status_code == 403


def test_nginx_endpoint_reads_forwarded_certificate_only_from_trusted_proxy(
    pdp: PdpProcess,
) -> None:
    headers = {
        "x-original-method": "GET",
        "x-original-uri": "/items",
        "host": "shop",
        "x-forwarded-client-cert": f"URI={FRONTEND}",
    }
    # The test client is 127.0.0.1, a configured trusted proxy: the URI is taken.
    response = httpx.get(f"{pdp.http_url}/auth/nginx", headers=headers)
    assert response.status_code == 403  # authenticated as the frontend, not allowed on "shop"
    assert (
        httpx.get(
            f"{pdp.http_url}/auth/nginx", headers={**headers, "x-forwarded-client-cert": "URI=nope"}
        ).status_code
        == 401
    )


def test_decision_api_single_and_batch(pdp: PdpProcess) -> None:
    one = {
        "principal": f'Workload::"{FRONTEND}"',
        "action": 'Action::"GET"',
        "resource": f'Service::"{CATALOG}"',
        "context": {},
    }
    response = httpx.post(f"{pdp.http_url}/v1/authorize", json=one)
    assert response.status_code == 200
    assert response.json() == {
        "decision": "allow",
        "reasons": ["frontend-reads-catalog"],
        "errors": [],
    }
    assert len(response.headers["x-meshward-decision-id"]) == 32
    batch = {"requests": [one, {**one, "action": 'Action::"DELETE"'}]}
    decisions = httpx.post(f"{pdp.http_url}/v1/authorize", json=batch).json()["decisions"]
    assert [d["decision"] for d in decisions] == ["allow", "deny"]


def test_decision_api_takes_the_check_document(pdp: PdpProcess) -> None:
    staff = {
        "principal": {"type": "User", "id": f"{ISSUER}|dave"},
        "parents": ['Group::"https://id.meshward.local|staff"'],
        "action": 'Action::"GET"',
        "resource": f'Service::"{CATALOG}"',
    }
    url = f"{pdp.http_url}/v1/authorize"
    assert httpx.post(url, json=staff).json()["decision"] == "allow"  # parents honoured
    assert httpx.post(url, json={**staff, "parents": []}).json()["decision"] == "deny"
    # context.http is mapped like a proxied request: an ambiguous path is a deny.
    odd = {**staff, "context": {"http": {"path": "/items%2F..%2Fadmin"}}}
    answer = httpx.post(url, json=odd).json()
    assert answer == {"decision": "deny", "reasons": [], "errors": ["request:encoded_slash"]}


@pytest.mark.parametrize(
    "body",
    [
        b'{"principal": "A::\\"a\\"", "action": "B::\\"b\\"", '
        b'"resource": "C::\\"c\\"", "unknown": 1}',
        b'{"requests": [], "other": 1}',
        b"not json",
        b"[]",
        b'{"principal": "x"}',
        b'{"requests": 5}',
        b'{"principal": "A::\\"a\\"", "action": "B::\\"b\\"", '
        b'"resource": "C::\\"c\\"", "context": []}',
    ],
)
def test_decision_api_bad_input(pdp: PdpProcess, body: bytes) -> None:
    response = httpx.post(f"{pdp.http_url}/v1/authorize", content=body)
    assert response.status_code == 400
    assert response.json()["error"] == "bad request"


def test_metrics(pdp: PdpProcess) -> None:
    doc = {"principal": 'User::"erin"', "action": 'Action::"GET"', "resource": 'Service::"x"'}
    assert httpx.post(f"{pdp.http_url}/v1/authorize", json=doc).status_code == 200
    # The gauge is the lowest over live workers: /readyz answered from one of
    # them, and on a loaded machine the other may still be loading policies.
    deadline = time.monotonic() + 30
    while "meshward_pdp_policies_loaded 1.0" not in (
        text := httpx.get(f"{pdp.http_url}/metrics").text
    ):
        assert time.monotonic() < deadline, "a worker never reported its policies loaded"
        time.sleep(0.1)
    assert "meshward_pdp_decisions_total" in text


def test_graceful_stop(pdp: PdpProcess) -> None:
    assert pdp.process is not None
    pdp.process.send_signal(signal.SIGTERM)
    assert pdp.process.wait(timeout=30) == 0
