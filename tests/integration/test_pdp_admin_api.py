"""The PDP's admin reads the console builds on: the active bundle and the recent decisions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.pdp import PdpProcess, pdp_process

SHOP = "spiffe://meshward.local/ns/shop/sa"
TOKEN = "admin-token-for-console-tests"


def _ask(principal: str) -> dict[str, object]:
    return {
        "principal": f'Workload::"{SHOP}/{principal}"',
        "action": 'Action::"GET"',
        "resource": f'Service::"{SHOP}/catalog"',
        "context": {
            "http": {"method": "GET", "host": "c", "path": "/", "query": "", "headers": {}}
        },
    }


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdpProcess]:
    workdir: Path = tmp_path_factory.mktemp("pdp-admin")
    with pdp_process(workdir, pdp_settings={"admin_token": TOKEN}) as proc:
        yield proc


def _admin() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}


def test_active_bundle_is_admin_only_and_complete(pdp: PdpProcess) -> None:
    url = f"{pdp.http_url}/v1/policies/active"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    body = httpx.get(url, headers=_admin()).json()
    status = httpx.get(f"{pdp.http_url}/v1/policies").json()
    assert body["version"] == status["active_version"]
    ids = {p["id"] for p in body["policies"]}
    assert "frontend-reads-catalog" in ids
    catalog = next(p for p in body["policies"] if p["id"] == "frontend-reads-catalog")
    assert catalog["effect"] == "permit" and catalog["file"] == "workloads.cedar"
    assert f'resource == Service::"{SHOP}/catalog"' in catalog["scope"]
    assert "entity Workload" in body["schema"]
    assert body["coverage"]["frontend-reads-catalog"]


def test_recent_decisions_newest_first_and_filtered(pdp: PdpProcess) -> None:
    for who in ("frontend", "nobody", "frontend"):
        httpx.post(f"{pdp.http_url}/v1/authorize", json=_ask(who)).raise_for_status()
    url = f"{pdp.http_url}/v1/decisions"
    assert httpx.get(url).status_code == 401
    rows = httpx.get(url, headers=_admin(), params={"principal": "frontend"}).json()["decisions"]
    assert len(rows) >= 2 and all("frontend" in r["principal"] for r in rows)
    assert rows[0]["time"] >= rows[-1]["time"]
    denied = httpx.get(url, headers=_admin(), params={"decision": "deny", "limit": "1"}).json()
    assert len(denied["decisions"]) == 1 and denied["decisions"][0]["decision"] == "deny"
    bad = httpx.get(url, headers=_admin(), params={"limit": "many"})
    assert bad.status_code == 400
    # Digits int() refuses (a Unicode digit; more than Python's 4,300): a 400 or the cap, no 500.
    assert httpx.get(url, headers=_admin(), params={"limit": "²"}).status_code == 400
    huge = httpx.get(url, headers=_admin(), params={"limit": "9" * 5000})
    assert huge.status_code == 200 and len(huge.json()["decisions"]) >= 2


def test_a_recent_decision_is_redacted_as_the_decision_log_is(pdp: PdpProcess) -> None:
    answer = httpx.get(
        f"{pdp.http_url}/auth/traefik",
        headers={
            "x-forwarded-method": "GET",
            "x-forwarded-host": "shop",
            "x-forwarded-uri": "/healthz?access_token=s3cr3t&page=2",
            "x-api-key": "k3y",
            "x-request-id": "r1",
        },
    )
    assert answer.status_code == 200
    decision_id = answer.headers["x-meshward-decision-id"]
    entry = httpx.get(f"{pdp.http_url}/v1/decisions/{decision_id}", headers=_admin()).json()
    http = entry["context"]["http"]
    assert http["query"] == "access_token=[redacted]&page=[redacted]"
    assert http["headers"]["x-api-key"] == "[redacted]"
    assert http["headers"]["x-request-id"] == "r1"
    assert "s3cr3t" not in str(entry) and "k3y" not in str(entry)
