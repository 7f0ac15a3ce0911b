from __future__ import annotations

import json
from typing import Any

import pytest

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, Effect, EntityUid, Identity
from tests.support.cli import REPO

FRONTEND = "spiffe://meshward.local/ns/shop/sa/frontend"
CATALOG = "spiffe://meshward.local/ns/shop/sa/catalog"


def req(principal: str, action: str, resource: str, context=None, parents=()) -> AccessRequest:
    return AccessRequest(
        Identity(EntityUid.parse(principal), tuple(EntityUid.parse(p) for p in parents)),
        EntityUid.parse(action),
        EntityUid.parse(resource),
        context or {},
    )


POLICIES = """
@id("p-eq")
permit (principal == User::"alice", action == Action::"GET", resource == Service::"s1");
@id("p-in-group")
permit (principal in Group::"staff", action in Action::"read", resource);
@id("p-is")
permit (principal is Workload, action == Action::"POST", resource in Service::"shop");
@id("f-path")
forbid (principal, action, resource) when { context has path && context.path like "/admin*" };
@id("f-error")
forbid (principal == User::"erroring", action, resource)
when { context has n && context.n * 9223372036854775807 > 1 };
@id("p-erroring")
permit (principal == User::"erroring", action, resource);
@id("p-error-permit")
permit (principal == User::"perr", action, resource)
when { context has n && context.n * 9223372036854775807 > 1 };
"""


def _entity(kind: str, ident: str, *parents: tuple[str, str], **attrs: str) -> dict[str, Any]:
    return {
        "uid": {"type": kind, "id": ident},
        "attrs": attrs,
        "parents": [{"type": t, "id": i} for t, i in parents],
    }


ENTITIES = json.dumps(
    [
        _entity("Group", "staff"),
        _entity("Group", "admins", ("Group", "staff")),
        _entity("Service", "shop"),
        _entity("Service", "s1", ("Service", "shop")),
        _entity("User", "static-bob", ("Group", "admins"), email="b@x"),
    ]
)


@pytest.fixture
def engine(make_bundle) -> Engine:
    return Engine(load_bundle(make_bundle({"p.cedar": POLICIES, "entities.json": ENTITIES})))


CASES = [
    # principal, parents, action, resource, context, effect, reasons, candidates
    (
        'User::"alice"',
        (),
        'Action::"GET"',
        'Service::"s1"',
        {},
        "allow",
        ["p-eq"],
        ["p-eq", "f-path"],
    ),
    ('User::"alice"', (), 'Action::"HEAD"', 'Service::"s1"', {}, "deny", [], ["f-path"]),
    (
        'User::"carol"',
        ('Group::"admins"',),
        'Action::"HEAD"',
        'Service::"x"',
        {},
        "allow",
        ["p-in-group"],
        ["p-in-group", "f-path"],
    ),
    (
        'User::"static-bob"',
        (),
        'Action::"GET"',
        'Service::"x"',
        {},
        "allow",
        ["p-in-group"],
        ["p-in-group", "f-path"],
    ),
    (
        'Workload::"w"',
        (),
        'Action::"POST"',
        'Service::"s1"',
        {},
        "allow",
        ["p-is"],
        ["p-is", "f-path"],
    ),
    (
        'Workload::"w"',
        (),
        'Action::"POST"',
        'Service::"s1"',
        {"path": "/admin/x"},
        "deny",
        ["f-path"],
        ["p-is", "f-path"],
    ),
    ('User::"alice"', (), 'Action::"PROPFIND"', 'Service::"s1"', {}, "deny", [], ["f-path"]),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[2]}-{c[5]}" for c in CASES])
def test_decisions_and_candidates(engine: Engine, case) -> None:
    principal, parents, action, resource, context, effect, reasons, candidates = case
    request = req(principal, action, resource, context, parents)
    decision = engine.evaluate(request)
    assert decision.effect is Effect(effect)
    assert list(decision.reasons) == sorted(reasons)
    assert decision.policy_version == engine.bundle.version
    assert sorted(p.id for p in engine.candidates(request)) == sorted(candidates)
    whole = Engine(engine.bundle, slicing=False)
    assert whole.evaluate(request) == decision


def test_an_erroring_forbid_denies_fail_closed(engine: Engine) -> None:
    decision = engine.evaluate(req('User::"erroring"', 'Action::"GET"', 'Service::"s1"', {"n": 2}))
    assert decision.effect is Effect.DENY
    assert decision.reasons == ("f-error",)
    assert any("f-error" in e for e in decision.errors)


def test_an_erroring_permit_grants_nothing(engine: Engine) -> None:
    decision = engine.evaluate(req('User::"perr"', 'Action::"GET"', 'Service::"s1"', {"n": 2}))
    assert decision.effect is Effect.DENY
    assert decision.reasons == ()
    assert any("p-error-permit" in e for e in decision.errors)


def test_evaluate_never_raises(engine: Engine) -> None:
    bad = req('User::"alice"', 'Action::"GET"', 'Service::"s1"', {"x": 1.5})
    decision = engine.evaluate(bad)
    assert decision.effect is Effect.DENY
    assert decision.errors
    assert decision.policy_version == engine.bundle.version


def test_request_parents_merge_with_static_parents(engine: Engine) -> None:
    # static-bob is an admin (so staff) in entities.json; the request adds another group.
    request = req('User::"static-bob"', 'Action::"GET"', 'Service::"x"', parents=['Group::"g"'])
    assert engine.evaluate(request).reasons == ("p-in-group",)


def test_slices_are_memoized_and_bounded(make_bundle) -> None:
    bundle = load_bundle(make_bundle({"p.cedar": POLICIES, "entities.json": ENTITIES}))
    engine = Engine(bundle, slice_cache_size=2)
    for who in ("alice", "carol", "dave", "erin"):
        engine.evaluate(req(f'User::"{who}"', 'Action::"GET"', 'Service::"s1"'))
    engine.evaluate(req('Workload::"w"', 'Action::"POST"', 'Service::"s1"'))
    assert len(engine._slices) <= 2


def test_example_mesh_decision() -> None:
    engine = Engine.from_bundle(load_bundle(REPO / "policies"))
    decision = engine.evaluate(
        req(f'Workload::"{FRONTEND}"', 'Action::"GET"', f'Service::"{CATALOG}"')
    )
    assert decision.allowed
    assert decision.reasons == ("frontend-reads-catalog",)


def test_unknown_principals_do_not_grow_the_hierarchy_memo(engine: Engine) -> None:
    for number in range(50):
        request = req(
            f'User::"u{number}"', 'Action::"GET"', 'Service::"s1"', parents=['Group::"x"']
        )
        assert engine.evaluate(request).effect is Effect.DENY
    assert not [uid for uid in engine._hierarchy._memo if uid.type == "User"]
    assert EntityUid("Service", "s1") in engine._hierarchy._memo


TRICKY_IDS = [
    "deny`admin",
    "x` error while evaluating policy `p-anything",
    "`",
    "a\\`b",
    "ends with backtick`",
]


@pytest.mark.parametrize("forbid_id", TRICKY_IDS)
def test_an_erroring_forbid_with_any_id_still_denies(make_bundle, forbid_id: str) -> None:
    # Policy ids are arbitrary strings: the erring forbid is found without reading
    # Cedar's error text, so an id with backticks cannot make it fail open.
    cedar_id = forbid_id.replace("\\", "\\\\")
    policies = f"""
@id("{cedar_id}")
forbid (principal, action, resource)
when {{ context has n && context.n * 9223372036854775807 > 1 }};
@id("p-all")
permit (principal, action, resource);
"""
    engine = Engine(load_bundle(make_bundle({"p.cedar": policies})))
    decision = engine.evaluate(req('User::"u"', 'Action::"GET"', 'Service::"s"', {"n": 2}))
    assert decision.effect is Effect.DENY
    assert decision.reasons == (forbid_id,)
    # No error: the permit decides.
    assert engine.evaluate(req('User::"u"', 'Action::"GET"', 'Service::"s"', {"n": 0})).allowed


def test_an_erroring_permit_named_like_an_error_message_does_not_deny(make_bundle) -> None:
    policies = """
@id("f-admin")
forbid (principal, action, resource) when { context has path && context.path == "/admin" };
@id("error while evaluating policy `f-admin`")
permit (principal, action, resource)
when { context has n && context.n * 9223372036854775807 > 1 };
@id("p-all")
permit (principal, action, resource);
"""
    engine = Engine(load_bundle(make_bundle({"p.cedar": policies})))
    decision = engine.evaluate(req('User::"u"', 'Action::"GET"', 'Service::"s"', {"n": 2}))
    assert decision.allowed
    assert decision.reasons == ("p-all",)
    assert decision.errors  # the permit's error is still reported
