from __future__ import annotations

import json
from typing import Any

import cedarpy
import pytest

from authz.engine.entities import EntityStore, entity_literals
from authz.engine.model import AccessRequest, EntityUid, Identity


def rec(kind: str, ident: str, parents=(), **attrs) -> dict[str, Any]:
    return {
        "uid": {"type": kind, "id": ident},
        "attrs": attrs,
        "parents": [{"type": t, "id": i} for t, i in parents],
    }


def ref(kind: str, ident: str) -> dict[str, Any]:
    return {"__entity": {"type": kind, "id": ident}}


RECORDS = [
    rec("Group", "top"),
    rec("Group", "mid", [("Group", "top")]),
    rec("Group", "low", [("Group", "mid")]),
    rec("User", "static", [("Group", "low")], boss=ref("User", "boss")),
    rec("User", "boss", [("Group", "mid")], org=ref("Org", "acme")),
    rec("Org", "acme", [("Org", "holding")], name="acme"),
    rec("Org", "holding"),
    rec("Service", "s", [("Service", "ns")]),
    rec("Service", "ns"),
    rec("Action", "GET", [("Action", "read")]),
    rec("Action", "read"),
]
POLICIES = {
    "deep-in": 'permit (principal in Group::"top", action, resource);',
    "attr-chain": "permit (principal, action, resource) when "
    '{ principal has boss && principal.boss.org in Org::"holding" };',
    "literal": 'permit (principal, action, resource) when { User::"boss" in Group::"top" };',
    "context-ref": "permit (principal, action, resource) when "
    '{ context has who && context.who in Group::"top" };',
}

REQUESTS = [
    # principal, parents, attributes, context
    (EntityUid("User", "static"), (EntityUid("Group", "x"),), {}, {}),
    (EntityUid("User", "new"), (EntityUid("Group", "low"),), {}, {}),
    (EntityUid("User", "new"), (), {"boss": EntityUid("User", "boss")}, {}),
    (EntityUid("User", "new"), (EntityUid("Group", "x"),), {}, {"who": ref("User", "static")}),
    (EntityUid("User", "static"), (), {}, {}),
]


@pytest.mark.parametrize("policy_id", sorted(POLICIES))
@pytest.mark.parametrize("case", range(len(REQUESTS)))
def test_the_request_subset_decides_like_the_whole_store(policy_id, case) -> None:
    handle = cedarpy.Entities.from_json_str(json.dumps(RECORDS))
    store = EntityStore(handle, RECORDS)
    principal, parents, attributes, context = REQUESTS[case]
    request = AccessRequest(
        Identity(principal, parents, attributes),
        EntityUid("Action", "GET"),
        EntityUid("Service", "s"),
        context,
    )
    text = POLICIES[policy_id]
    body = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]["policy0"]
    subset = store.for_request(request, entity_literals(body))

    whole_records = [dict(r) for r in RECORDS]
    mine = {k: {"__entity": v.to_cedar()} for k, v in attributes.items()}
    wanted = [p.to_cedar() for p in parents]
    for record in whole_records:
        if record["uid"] == principal.to_cedar():
            record["parents"] = record["parents"] + wanted
            record["attrs"] = {**record["attrs"], **mine}
            break
    else:
        whole_records.append({"uid": principal.to_cedar(), "attrs": mine, "parents": wanted})
    cedar_request = {
        "principal": principal.to_cedar(),
        "action": {"type": "Action", "id": "GET"},
        "resource": {"type": "Service", "id": "s"},
        "context": context,
    }
    policies = cedarpy.PolicySet.from_str(text)
    expected = cedarpy.is_authorized(cedar_request, policies, json.dumps(whole_records))
    got = cedarpy.is_authorized(cedar_request, policies, subset)
    assert got.allowed == expected.allowed
    assert got.diagnostics.errors == expected.diagnostics.errors


def test_a_plain_principal_reuses_the_static_handle() -> None:
    handle = cedarpy.Entities.from_json_str(json.dumps(RECORDS))
    store = EntityStore(handle, RECORDS)
    request = AccessRequest(
        Identity(EntityUid("Workload", "w")), EntityUid("Action", "GET"), EntityUid("Service", "s")
    )
    assert store.for_request(request) is handle
    assert EntityUid("User", "static") in store


def test_entity_literals_of_scope_and_conditions() -> None:
    text = (
        'permit (principal is User in Group::"g", action in [Action::"a", Action::"b"], '
        'resource == Service::"s") when { principal in Group::"h" };'
    )
    body = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]["policy0"]
    assert entity_literals(body) == {
        EntityUid("Group", "g"),
        EntityUid("Action", "a"),
        EntityUid("Action", "b"),
        EntityUid("Service", "s"),
        EntityUid("Group", "h"),
    }
