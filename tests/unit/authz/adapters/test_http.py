"""The HTTP adapters' answers and the decision API's input parsing (no sockets)."""

from __future__ import annotations

import json

import pytest

from authz.adapters.http import _answer, parse_documents
from authz.engine.canonical import MalformedRequest
from authz.engine.decider import Outcome, Verdict
from authz.engine.model import AccessRequest, AuthMethod, Decision, Effect, EntityUid
from authz.engine.request import PathOptions
from authz.errors import RequestError

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
    # Every forward-auth answer names them for the proxy to delete.
    assert _answer(verdict).headers["x-meshward-remove-headers"] == "authorization,cookie"
    nothing = Verdict(Outcome.ALLOW, ALLOW, "id1", EntityUid("U", "u"))
    assert "x-meshward-remove-headers" not in _answer(nothing).headers


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
    assert json.loads(bytes(response.body)) == {"error": error, "decision_id": "id2"}
    assert ("www-authenticate" in response.headers) == (status == 401)
    assert ("retry-after" in response.headers) == (status == 503)


def test_unencodable_principal_fails_closed() -> None:
    verdict = Verdict(Outcome.ALLOW, ALLOW, "id3", EntityUid("User", "https://idp|名前"))
    response = _answer(verdict)
    assert response.status_code == 403
    assert json.loads(bytes(response.body))["decision_id"] == "id3"


def test_documents_are_mapped_like_proxied_requests() -> None:
    (request,) = parse_documents(
        [
            {
                "principal": {"type": "User", "id": "alice"},
                "parents": ['Group::"admins"', {"type": "Group", "id": "ops"}],
                "action": 'Action::"GET"',
                "resource": 'Service::"x"',
                "context": {"http": {"path": "/x/../%61dmin", "host": "API.example:443"}},
            }
        ],
        PathOptions(),
    )
    assert isinstance(request, AccessRequest)
    assert request.principal == EntityUid("User", "alice")
    assert request.identity.parents == (EntityUid("Group", "admins"), EntityUid("Group", "ops"))
    assert request.identity.method is AuthMethod.ASSERTED
    assert request.context["http"]["path"] == "/admin"
    assert request.context["http"]["raw_path"] == "/x/../%61dmin"
    assert request.context["http"]["host"] == "api.example"
    assert request.context["http"]["method"] == "GET"


def test_an_ambiguous_document_is_a_deny_not_bad_input() -> None:
    doc = {
        "principal": 'User::"a"',
        "action": 'Action::"GET"',
        "resource": 'Service::"x"',
        "context": {"http": {"path": "/a%2Fb"}},
    }
    (item,) = parse_documents([doc], PathOptions())
    assert isinstance(item, MalformedRequest)
    assert item.code == "encoded_slash"
    (allowed,) = parse_documents([doc], PathOptions(allow_encoded_slash=True))
    assert isinstance(allowed, AccessRequest)
    assert allowed.context["http"]["path"] == "/a%2Fb"


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "x",
        {"principal": 'User::"a"', "action": 'Action::"GET"'},
        {"principal": "alice", "action": 'Action::"GET"', "resource": 'S::"x"'},
        {"principal": 'U::"a"', "action": 'A::"b"', "resource": 'S::"x"', "context": [1]},
        {"principal": 'U::"a"', "action": 'A::"b"', "resource": 'S::"x"', "extra": 1},
        {"principal": 'U::"a"', "action": 'A::"b"', "resource": 'S::"x"', "parents": "G"},
        {
            "principal": 'U::"a"',
            "action": 'A::"b"',
            "resource": 'S::"x"',
            "context": {"http": {"path": "/", "bogus": 1}},
        },
    ],
)
def test_documents_that_are_not_requests_are_refused(doc: object) -> None:
    with pytest.raises(RequestError):
        parse_documents([doc], PathOptions())
