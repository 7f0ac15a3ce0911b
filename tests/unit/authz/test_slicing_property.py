"""Sliced evaluation gives exactly what Cedar gives on the whole policy set.

Hypothesis generates policy sets over a small universe (so scopes often match:
``==``, ``in`` through two levels of groups and services, ``is``, ``is ... in``,
action ``in [..]``, conditions that hold, fail or err) and requests (with
request-given parents, static principals, actions outside the schema). For
each, the engine's sliced answer must equal plain ``cedarpy.is_authorized`` on
the whole set with an entity set built independently: same decision, same
determining policies, same errors.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import cedarpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.engine.bundle import load_bundle
from authz.engine.cedar import plain
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from tests.unit.authz.conftest import write_tree

SCHEMA = """
entity Group in [Group];
entity Workload in [Group];
entity User in [Group] { manager?: User };
entity Anonymous in [Group];
entity Service in [Service];
action "read", "write";
action "GET", "HEAD" in ["read"] appliesTo {
  principal: [Workload, User, Anonymous], resource: [Service],
  context: Ctx
};
action "POST", "DELETE" in ["write"] appliesTo {
  principal: [Workload, User, Anonymous], resource: [Service],
  context: Ctx
};
type Ctx = {
  path?: String, n?: Long, ref?: Group,
  http?: { path?: String, host?: String, headers?: { "x-a"?: String, "x-b"?: String } }
};
"""

PRINCIPAL_SCOPES = [
    "principal",
    'principal == User::"a"',
    'principal == User::"static"',
    'principal == Workload::"w1"',
    'principal in Group::"g1"',
    'principal in Group::"g2"',
    'principal in User::"b"',
    "principal is User",
    "principal is Workload",
    'principal is User in Group::"g2"',
    'principal is Anonymous in Group::"g1"',
]
ACTION_SCOPES = [
    "action",
    'action == Action::"GET"',
    'action == Action::"POST"',
    'action in Action::"read"',
    'action in Action::"write"',
    'action in [Action::"DELETE", Action::"read"]',
]
RESOURCE_SCOPES = [
    "resource",
    'resource == Service::"s1"',
    'resource == Service::"s2"',
    'resource in Service::"ns"',
    'resource in Service::"s2"',
    "resource is Service",
    'resource is Service in Service::"ns"',
]
CONDITIONS = [
    "",
    " when { context has n && context.n > 0 }",
    " unless { context has n && context.n > 0 }",
    " when { context has n && context.n * 9223372036854775807 > 1 }",
    ' when { principal in Group::"g1" }',
    ' when { context has path && context.path like "/admin*" }',
    ' when { principal has manager && principal.manager in Group::"g2" }',
    ' when { User::"boss" in Group::"g2" && User::"boss" has manager }',
    # The engine hands Cedar only the context its candidates read: nested reads,
    # presence tests, entity references in the context.
    ' when { context has http && context.http has path && context.http.path like "/api*" }',
    ' when { context has http && context.http has headers && context.http.headers has "x-a" }',
    " unless { context has http && context.http has host }",
    ' when { context has ref && context.ref in Group::"g2" }',
]

STATIC_ENTITIES: list[dict[str, Any]] = [
    {"uid": {"type": "Group", "id": "g1"}, "attrs": {}, "parents": [{"type": "Group", "id": "g2"}]},
    {"uid": {"type": "Group", "id": "g2"}, "attrs": {}, "parents": []},
    {"uid": {"type": "Group", "id": "g3"}, "attrs": {}, "parents": []},
    {"uid": {"type": "Service", "id": "ns"}, "attrs": {}, "parents": []},
    {
        "uid": {"type": "Service", "id": "s1"},
        "attrs": {},
        "parents": [{"type": "Service", "id": "ns"}],
    },
    {"uid": {"type": "Service", "id": "s2"}, "attrs": {}, "parents": []},
    {
        "uid": {"type": "User", "id": "static"},
        "attrs": {"manager": {"__entity": {"type": "User", "id": "boss"}}},
        "parents": [{"type": "Group", "id": "g1"}],
    },
    {
        "uid": {"type": "User", "id": "boss"},
        "attrs": {"manager": {"__entity": {"type": "User", "id": "top"}}},
        "parents": [{"type": "Group", "id": "g1"}],
    },
    {"uid": {"type": "User", "id": "top"}, "attrs": {}, "parents": []},
]
ACTION_PARENTS = {
    "GET": ["read"],
    "HEAD": ["read"],
    "POST": ["write"],
    "DELETE": ["write"],
    "read": [],
    "write": [],
}

policy = st.tuples(
    st.sampled_from(["permit", "forbid"]),
    st.sampled_from(PRINCIPAL_SCOPES),
    st.sampled_from(ACTION_SCOPES),
    st.sampled_from(RESOURCE_SCOPES),
    st.sampled_from(CONDITIONS),
    st.booleans(),
)
principals = st.sampled_from(
    [
        'User::"a"',
        'User::"b"',
        'User::"static"',
        'Workload::"w1"',
        'Workload::"w2"',
        'Anonymous::"anonymous"',
    ]
)
request = st.tuples(
    principals,
    st.lists(st.sampled_from(['Group::"g1"', 'Group::"g2"', 'Group::"g3"']), max_size=2),
    st.sampled_from(['Action::"GET"', 'Action::"HEAD"', 'Action::"POST"', 'Action::"DELETE"']),
    st.sampled_from(['Service::"s1"', 'Service::"s2"', 'Service::"ns"', 'Service::"other"']),
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.integers(min_value=-1, max_value=3),
            "path": st.sampled_from(["/", "/admin/x"]),
            "http": st.fixed_dictionaries(
                {},
                optional={
                    "path": st.sampled_from(["/", "/api/x"]),
                    "host": st.just("h"),
                    "headers": st.fixed_dictionaries(
                        {}, optional={"x-a": st.just("1"), "x-b": st.just("2")}
                    ),
                },
            ),
            "ref": st.sampled_from([EntityUid("Group", "g1"), EntityUid("Group", "g3")]),
            # Read by no policy; a null or a float makes Cedar refuse the whole request.
            "unread": st.one_of(st.just("x"), st.none(), st.floats(allow_nan=False)),
        },
    ),
    st.sampled_from([None, "boss", "top"]),
)


def _policy_text(index: int, spec: tuple[str, str, str, str, str, bool]) -> str:
    effect, p, a, r, condition, named = spec
    annotation = f'@id("policy-{index}")\n' if named else ""
    return f"{annotation}{effect} ({p}, {a}, {r}){condition};\n"


def _independent_entities(
    principal: EntityUid, parents: list[EntityUid], attrs: dict[str, Any]
) -> list[dict[str, Any]]:
    """The entity set Cedar should see, built without the engine's code."""
    entities = [dict(e) for e in STATIC_ENTITIES]
    entities += [
        {
            "uid": {"type": "Action", "id": name},
            "attrs": {},
            "parents": [{"type": "Action", "id": p} for p in up],
        }
        for name, up in ACTION_PARENTS.items()
    ]
    wanted = [{"type": p.type, "id": p.id} for p in parents]
    for entity in entities:
        if entity["uid"] == {"type": principal.type, "id": principal.id}:
            entity["parents"] = entity["parents"] + [
                w for w in wanted if w not in entity["parents"]
            ]
            entity["attrs"] = {**entity["attrs"], **attrs}
            return entities
    entities.append(
        {"uid": {"type": principal.type, "id": principal.id}, "attrs": attrs, "parents": wanted}
    )
    return entities


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(policy, min_size=1, max_size=14),
    requests=st.lists(request, min_size=1, max_size=6),
)
def test_sliced_evaluation_equals_whole_set_evaluation(policies, requests) -> None:
    files = {
        "a.cedar": "".join(_policy_text(i, s) for i, s in enumerate(policies) if i % 2 == 0),
        "b.cedar": "".join(_policy_text(i, s) for i, s in enumerate(policies) if i % 2 == 1),
        "entities.json": json.dumps(STATIC_ENTITIES),
    }
    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(write_tree(Path(tmp) / "b", {"schema.cedarschema": SCHEMA, **files}))
    engine = Engine(bundle)
    for principal_text, parent_texts, action, resource, context, manager in requests:
        principal = EntityUid.parse(principal_text)
        parents = [EntityUid.parse(p) for p in parent_texts]
        attributes = {} if manager is None else {"manager": EntityUid("User", manager)}
        cedar_attrs = {k: {"__entity": v.to_cedar()} for k, v in attributes.items()}
        if principal.type != "User":
            attributes, cedar_attrs = {}, {}
        access = AccessRequest(
            Identity(principal, tuple(parents), attributes),
            EntityUid.parse(action),
            EntityUid.parse(resource),
            context,
        )
        sliced = engine.evaluate_raw(access)
        whole = cedarpy.is_authorized(
            {
                "principal": principal_text,
                "action": action,
                "resource": resource,
                "context": plain(context),
            },
            bundle.policy_set,
            json.dumps(_independent_entities(principal, parents, cedar_attrs)),
        )
        assert sliced.allowed == whole.allowed
        assert sliced.reasons == tuple(sorted(whole.diagnostics.reasons))
        assert sliced.errors == tuple(sorted(whole.diagnostics.errors))
        # and the fail-closed decision is the same as the engine without slicing
        assert engine.evaluate(access) == Engine(bundle, slicing=False).evaluate(access)
        candidate_ids = {p.id for p in engine.candidates(access)}
        assert set(whole.diagnostics.reasons) <= candidate_ids
