"""The HTTP adapters' answers and the decision API's input parsing (no sockets)."""

from __future__ import annotations

import json

import pytest

from authz.adapters.http import BadInput, _answer, parse_check_json
from authz.decider import Outcome, Verdict
from authz.model import AuthMethod, Decision, Effect, EntityUid

ALLOW = Decision(Effect.ALLOW, ("p1",))


def test_allow_carries_principal_and_decision_id() -> None:
    response = _answer(Verdict(Outcome.ALLOW, ALLOW, "id1", EntityUid("Workload", "spiffe://a/b")))
    assert response.status_code == 200
    assert response.headers["x-meshward-principal"] == 'Workload::"spiffe://a/b"'
    assert response.headers["x-meshward-decision-id"] == "id1"


def test_envoy_gets_headers_to_remove() -> None:
    verdict = Verdict(Outcome.ALLOW, ALLOW, "id1", EntityUid("U", "u"), ("authorization", "cookie"))
    assert _answer(verdict, envoy=True).headers["x-envoy-auth-headers-to-remove"] == (
        "authorization,cookie"
    )
    assert "x-envoy-auth-headers-to-remove" not in _answer(verdict).headers


@pytest.mark.parametrize(
    ("outcome", "status", "error"),
    [
        (Outcome.UNAUTHENTICATED, 401, "unauthenticated"),
        (Outcome.DENY, 403, "forbidden"),
        (Outcome.ERROR, 403, "denied"),
        (Outcome.UNAVAILABLE, 503, "unavailable"),
    ],
)
def test_denials(outcome: Outcome, status: int, error: str) -> None:
    response = _answer(Verdict(outcome, Decision.deny("x"), "id2"))
    assert response.status_code == status
    assert json.loads(response.body) == {"error": error, "decision_id": "id2"}
    assert ("www-authenticate" in response.headers) == (status == 401)
    assert ("retry-after" in response.headers) == (status == 503)


def test_unencodable_principal_fails_closed() -> None:
    verdict = Verdict(Outcome.ALLOW, ALLOW, "id3", EntityUid("User", "https://idp|名前"))
    response = _answer(verdict)
    assert response.status_code == 403
    assert json.loads(response.body)["decision_id"] == "id3"


def test_parse_check_json() -> None:
    request = parse_check_json(
        {
            "principal": 'User::"alice"',
            "action": 'Action::"GET"',
            "resource": 'Service::"x"',
            "context": {"http": {"path": "/"}},
        }
    )
    assert request.principal == EntityUid("User", "alice")
    assert request.identity.method is AuthMethod.ASSERTED
    assert request.context["http"] == {"path": "/"}


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "x",
        {"principal": 'User::"a"', "action": 'Action::"GET"'},
        {"principal": "alice", "action": 'Action::"GET"', "resource": 'S::"x"'},
        {"principal": 'U::"a"', "action": 'A::"b"', "resource": 'S::"x"', "context": [1]},
    ],
)
def test_parse_check_json_rejects(doc: object) -> None:
    with pytest.raises(BadInput):
        parse_check_json(doc)
