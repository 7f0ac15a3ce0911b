from __future__ import annotations

import pytest

from authz.cedar import (
    build_context,
    entity_record,
    grpc_context,
    http_context,
    peer_context,
    plain,
    principal_entities,
    to_cedar_request,
)
from authz.model import AccessRequest, EntityUid, Identity

USER = EntityUid("User", "https://id.example|alice")
ADMINS = EntityUid("Group", "admins")


def test_request_maps_uids_and_context() -> None:
    request = AccessRequest(
        Identity(USER, (ADMINS,)),
        EntityUid("Action", "GET"),
        EntityUid("Service", "spiffe://td/ns/a/sa/b"),
        {"http": {"path": "/x", "headers": {"a": "b"}}, "tags": ("t1", "t2")},
    )
    assert to_cedar_request(request) == {
        "principal": {"type": "User", "id": "https://id.example|alice"},
        "action": {"type": "Action", "id": "GET"},
        "resource": {"type": "Service", "id": "spiffe://td/ns/a/sa/b"},
        "context": {"http": {"path": "/x", "headers": {"a": "b"}}, "tags": ["t1", "t2"]},
    }


def test_principal_entity_carries_parents_once_and_attributes() -> None:
    identity = Identity(USER, (ADMINS, ADMINS, EntityUid("Group", "x")), {"email": "a@b"})
    assert principal_entities(identity) == [
        {
            "uid": {"type": "User", "id": "https://id.example|alice"},
            "attrs": {"email": "a@b"},
            "parents": [{"type": "Group", "id": "admins"}, {"type": "Group", "id": "x"}],
        }
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EntityUid("Service", "s"), {"__entity": {"type": "Service", "id": "s"}}),
        (frozenset({"b", "a"}), ["a", "b"]),
        ({"k": (1, 2)}, {"k": [1, 2]}),
        ("s", "s"),
        (True, True),
    ],
)
def test_plain(value, expected) -> None:
    assert plain(value) == expected


def test_context_parts() -> None:
    http = http_context("get", "h", "/p", "q=1", {"X-Tenant": "t"})
    assert http == {
        "method": "GET",
        "host": "h",
        "path": "/p",
        "query": "q=1",
        "headers": {"x-tenant": "t"},
    }
    assert peer_context("spiffe://meshward.local/ns/a/sa/b") == {
        "spiffe_id": "spiffe://meshward.local/ns/a/sa/b",
        "trust_domain": "meshward.local",
    }
    assert grpc_context("/pkg.Svc/Method") == {"service": "pkg.Svc", "method": "Method"}
    for path in ("/", "/a", "/a/b/c", "//m", "a/b"):
        assert grpc_context(path) is None
    assert build_context() == {}
    ctx = build_context(http=http, token_claims={"sub": "alice"})
    assert set(ctx) == {"http", "token"}
    assert ctx["token"] == {"claims": {"sub": "alice"}}


def test_entity_record_shape() -> None:
    assert entity_record(ADMINS) == {
        "uid": {"type": "Group", "id": "admins"},
        "attrs": {},
        "parents": [],
    }
