"""Why was I denied? ``check --explain``, ``/v1/authorize`` with ``explain``, and
``GET /v1/decisions/{id}`` on a real PDP, as a user drives them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import meshward
from tests.support.pdp import PdpProcess, pdp_process

SHOP = "spiffe://meshward.local/ns/shop/sa"
ASK = {
    "principal": f'Workload::"{SHOP}/frontend"',
    "action": 'Action::"DELETE"',
    "resource": f'Service::"{SHOP}/catalog"',
    "context": {"http": {"headers": {"cookie": "session=s3cret"}}},
}
TOKEN = "admin-token-for-tests"


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdpProcess]:
    workdir: Path = tmp_path_factory.mktemp("pdp-explain")
    with pdp_process(workdir) as proc:
        yield proc


def test_check_explain_names_the_candidates(tmp_path: Path) -> None:
    result = meshward("check", "--explain", stdin=json.dumps(ASK))
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["decision"] == "deny"
    explanation = out["explanation"]
    assert explanation["summary"].startswith("denied by default")
    assert [c["id"] for c in explanation["candidates"]] == ["foreign-trust-domains"]
    assert explanation["candidates"][0]["outcome"] == "conditions-false"
    uids = [e["uid"] for e in explanation["entities"]]
    assert f'Workload::"{SHOP}/frontend"' in uids and 'Action::"DELETE"' in uids


def test_check_without_explain_is_unchanged() -> None:
    result = meshward("check", stdin=json.dumps(ASK))
    assert json.loads(result.stdout) == {"decision": "deny", "reasons": [], "errors": []}


def test_check_explain_field_must_be_a_boolean() -> None:
    result = meshward("check", stdin=json.dumps({**ASK, "explain": "yes"}))
    assert result.returncode == 2
    assert "explain" in result.stderr


def test_authorize_explain_and_decision_lookup(pdp: PdpProcess) -> None:
    answer = httpx.post(f"{pdp.http_url}/v1/authorize", json={**ASK, "explain": True})
    assert answer.status_code == 200
    body = answer.json()
    assert body["decision"] == "deny"
    assert body["explanation"]["candidates"][0]["id"] == "foreign-trust-domains"
    plain = httpx.post(f"{pdp.http_url}/v1/authorize", json=ASK).json()
    assert "explanation" not in plain

    decision_id = answer.headers["x-meshward-decision-id"]
    found = httpx.get(f"{pdp.http_url}/v1/decisions/{decision_id}")
    assert found.status_code == 200
    record = found.json()
    assert record["decision_id"] == decision_id and record["decision"] == "deny"
    assert record["context"]["http"]["headers"]["cookie"] == "[redacted]"
    assert "s3cret" not in found.text

    explained = httpx.get(f"{pdp.http_url}/v1/decisions/{decision_id}?explain=true").json()
    assert explained["explanation"]["summary"].startswith("denied by default")
    assert httpx.get(f"{pdp.http_url}/v1/decisions/nope").status_code == 404


def test_batch_items_may_ask_for_explanations(pdp: PdpProcess) -> None:
    body = {"requests": [{**ASK, "explain": True}, ASK]}
    decisions = httpx.post(f"{pdp.http_url}/v1/authorize", json=body).json()["decisions"]
    assert "explanation" in decisions[0] and "explanation" not in decisions[1]


def test_decisions_refuse_proxied_callers_without_a_token(pdp: PdpProcess) -> None:
    response = httpx.get(
        f"{pdp.http_url}/v1/decisions/x", headers={"x-forwarded-for": "203.0.113.9"}
    )
    assert response.status_code == 403


def test_decisions_with_an_admin_token(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    settings = {"admin_token_file": str(token_file)}
    with pdp_process(tmp_path / "pdp", pdp_settings=settings) as proc:
        answer = httpx.post(f"{proc.http_url}/v1/authorize", json=ASK)
        url = f"{proc.http_url}/v1/decisions/{answer.headers['x-meshward-decision-id']}"
        assert httpx.get(url).status_code == 401
        wrong = httpx.get(url, headers={"authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        right = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert right.json()["decision"] == "deny"
