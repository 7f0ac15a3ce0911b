from __future__ import annotations

import pytest

from authz.engine.cedar import (
    entity_record,
    plain,
    principal_entities,
    to_cedar_request,
)
from authz.engine.model import AccessRequest, EntityUid, Identity

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


def test_entity_record_shape() -> None:
    assert entity_record(ADMINS) == {
        "uid": {"type": "Group", "id": "admins"},
        "attrs": {},
        "parents": [],
    }
