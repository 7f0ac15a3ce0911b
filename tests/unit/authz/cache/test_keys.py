"""Cache keys: which context reads are found, and when keys match or differ."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import cedarpy
import pytest
import yaml

from authz.cache.keys import ContextReads, KeySpace, Projection, context_reads
from authz.engine.model import AccessRequest, EntityUid, Identity

CASES = yaml.safe_load((Path(__file__).parent / "data" / "context_reads.yaml").read_text())


def est(text: str) -> dict[str, dict[str, Any]]:
    """Each policy's JSON form by its position: p0, p1, ..."""
    doc = json.loads(cedarpy.policies_to_json_str(text))
    return {f"p{i}": body for i, body in enumerate(doc["staticPolicies"].values())}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_context_reads(case: dict[str, Any]) -> None:
    (policy,) = est(case["policy"]).values()
    reads = context_reads(policy)
    assert reads.values == {tuple(p) for p in case["values"]}
    assert reads.presence == {tuple(p) for p in case["presence"]}


def test_projection_drops_paths_covered_by_a_shorter_read() -> None:
    reads = ContextReads(
        frozenset({("http",), ("http", "path"), ("peer", "id")}),
        frozenset({("http", "x"), ("peer",), ("token", "claims")}),
    )
    proj = Projection.of([reads])
    assert proj.values == (("http",), ("peer", "id"))
    assert proj.presence == (("peer",), ("token", "claims"))
    assert not proj.time_dependent


POLICIES = """
@id("path") permit(principal, action == Action::"GET", resource == Service::"api")
  when { context.http.path like "/v1/*" };
@id("user") permit(principal, action == Action::"POST", resource == Service::"api")
  when { context.http.headers["x-user"] == "bob" };
@id("clock") permit(principal, action == Action::"PUT", resource == Service::"api")
  when { context.now < 100 };
@id("whole") permit(principal, action == Action::"DELETE", resource == Service::"api")
  when { context.http == {"path": "/"} };
@id("peer") permit(principal, action == Action::"PATCH", resource == Service::"api")
  when { context has peer && context.peer.spiffe_id == "spiffe://td/a" };
"""
IDS = {
    "GET": ["path"],
    "POST": ["user"],
    "PUT": ["clock"],
    "DELETE": ["whole"],
    "PATCH": ["peer"],
}


def space(version: str = "v1") -> KeySpace:
    named = {body["annotations"]["id"]: body for body in est(POLICIES).values()}
    return KeySpace(version, named)


def request(
    method: str = "GET",
    *,
    principal: str = "spiffe://td/a",
    parents: tuple[str, ...] = (),
    attributes: dict[str, Any] | None = None,
    resource: str = "api",
    **context: Any,
) -> AccessRequest:
    ident = Identity(
        EntityUid("Workload", principal),
        tuple(EntityUid("Group", p) for p in parents),
        attributes or {},
        expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    return AccessRequest(
        ident, EntityUid("Action", method), EntityUid("Service", resource), context
    )


def http(path: str = "/v1/x", **headers: str) -> dict[str, Any]:
    return {"path": path, "method": "GET", "headers": headers}


def key(req: AccessRequest, version: str = "v1") -> str | None:
    return space(version).key(req, IDS[req.action.id])


def test_unread_header_does_not_change_the_key() -> None:
    a = key(request(http=http(**{"x-request-id": "1"})))
    b = key(request(http=http(**{"x-request-id": "2", "user-agent": "curl"})))
    assert a is not None and a == b


def test_read_attribute_changes_the_key() -> None:
    assert key(request(http=http("/v1/x"))) != key(request(http=http("/v2/x")))


def test_read_header_is_in_the_key() -> None:
    bob = key(request("POST", http=http(**{"x-user": "bob"})))
    eve = key(request("POST", http=http(**{"x-user": "eve"})))
    missing = key(request("POST", http=http()))
    assert len({bob, eve, missing}) == 3


def test_same_request_other_candidates_reads_other_attributes() -> None:
    # GET reads only the path: the header is not in its key.
    assert key(request(http=http(**{"x-user": "bob"}))) == key(
        request(http=http(**{"x-user": "eve"}))
    )


def test_time_dependent_decisions_have_no_key() -> None:
    assert key(request("PUT", now=5, http=http())) is None


def test_whole_record_read_with_time_inside_has_no_key() -> None:
    ks = KeySpace(
        "v1", {"all": est("permit(principal, action, resource) when { context == {} };")["p0"]}
    )
    assert ks.key(request(http=http()), ["all"]) is not None
    assert ks.key(request(http=http(), now=5), ["all"]) is None


def test_whole_record_read_includes_everything_in_it() -> None:
    a = key(request("DELETE", http=http(**{"x-request-id": "1"})))
    b = key(request("DELETE", http=http(**{"x-request-id": "2"})))
    assert a != b


def test_presence_and_value() -> None:
    absent = key(request("PATCH", http=http()))
    other = key(request("PATCH", http=http(), peer={"spiffe_id": "spiffe://td/b"}))
    match = key(request("PATCH", http=http(), peer={"spiffe_id": "spiffe://td/a"}))
    extra = key(request("PATCH", http=http(), peer={"spiffe_id": "spiffe://td/a", "td": "x"}))
    assert len({absent, other, match}) == 3
    assert match == extra


def test_entity_reference_in_context_is_taken_whole() -> None:
    ks = KeySpace(
        "v1",
        {
            "c": est('permit(principal, action, resource) when { context.caller.name == "x" };')[
                "p0"
            ]
        },
    )
    a = ks.key(request(caller={"__entity": {"type": "User", "id": "a"}}), ["c"])
    b = ks.key(request(caller={"__entity": {"type": "User", "id": "b"}}), ["c"])
    c = ks.key(request(caller={"type": "User", "id": "a"}), ["c"])
    d = ks.key(request(caller={"type": "User", "id": "b"}), ["c"])
    assert len({a, b, c, d}) == 4


def test_non_record_on_the_path_is_in_the_key() -> None:
    assert key(request(http="a")) != key(request(http="b"))
    assert key(request(http="a")) != key(request())


def test_version_principal_parents_action_resource_attributes() -> None:
    base = key(request(http=http()))
    assert base != key(request(http=http()), version="v2")
    assert base != key(request(principal="spiffe://td/b", http=http()))
    assert base != key(request(parents=("g",), http=http()))
    assert base != key(request(resource="other", http=http()))
    assert base != key(request(attributes={"team": "x"}, http=http()))
    assert key(request(parents=("a", "b"), http=http())) == key(
        request(parents=("b", "a"), http=http())
    )


def test_types_are_distinguished() -> None:
    values: list[Any] = [1, "1", True, [1], {"a": 1}, None]
    keys = {key(request(http={"path": v})) for v in values}
    assert len(keys) == len(values)


def test_unknown_candidate_falls_back_to_every_policy() -> None:
    ks = space()
    assert ks.projection(["nope"]) is ks.projection(None)
    assert ("now",) in ks.projection(None).values
    assert ks.key(request(http=http()), ["nope"]) is None  # every policy includes the clock one


def test_projection_is_memoised_per_candidate_set() -> None:
    ks = space()
    assert ks.projection(["path", "user"]) is ks.projection(("path", "user"))
    assert ks.projection(["path", "user"]).values == ks.projection(("user", "path")).values


def test_unencodable_context_has_no_key() -> None:
    assert key(request(http={"path": float("nan")})) is None
    assert key(request(http={"path": object()})) is None


def test_values_are_keyed_as_cedar_sees_them() -> None:
    # A set is unordered for Cedar; an EntityUid is an entity reference.
    assert key(request(http={"path": {"b", "a"}})) == key(request(http={"path": {"a", "b"}}))
    uid = EntityUid("User", "a")
    assert key(request(http={"path": uid})) == key(
        request(http={"path": {"__entity": uid.to_cedar()}})
    )
    assert key(request(http={"path": uid})) != key(request(http={"path": EntityUid("User", "b")}))


@pytest.mark.parametrize(
    "bad",
    [None, 1.5, 2**63, -(2**63) - 1, [None], {"a": None}, {"__extn": {"fn": "ip", "arg": "x"}},
     {"__entity": "User::a"}, b"x"],
)  # fmt: skip
def test_requests_cedar_rejects_have_no_key(bad: Any) -> None:
    # Even in a header no policy reads: Cedar rejects the whole request.
    assert key(request(http=http(**{"x-extra": bad}))) is None
    assert key(request(attributes={"claim": bad}, http=http())) is None


@pytest.mark.parametrize(
    "good",
    ["", "x", True, 0, 2**63 - 1, -(2**63), [], ["a"], {"a": {"b": 1}},
     {"__entity": {"type": "T", "id": "i"}}],
)  # fmt: skip
def test_clean_values_keep_their_key(good: Any) -> None:
    assert key(request(http=http(**{"x-extra": good}))) == key(request(http=http()))


def test_narrow_keeps_what_is_read_and_the_records_on_the_way() -> None:
    reads = ContextReads(
        values=frozenset({("http", "path"), ("peer",), ("ref", "name")}),
        presence=frozenset({("http", "headers"), ("token", "claims")}),
    )
    context: dict[str, Any] = {
        "http": {"path": "/a", "method": "GET", "headers": {"x": "1", "y": "2"}},
        "peer": {"spiffe_id": "spiffe://td/w", "trust_domain": "td"},
        "ref": EntityUid("User", "u"),  # not a record: taken whole where the walk meets it
        "token": {"claims": "not a record"},
        "unread": {"big": "x" * 100},
    }
    narrowed = Projection.of([reads], ()).narrow(context)
    assert narrowed == {
        "http": {"path": "/a", "headers": {}},  # present, contents not read
        "peer": context["peer"],
        "ref": EntityUid("User", "u"),
        "token": {"claims": "not a record"},
    }
    assert context["http"]["headers"] == {"x": "1", "y": "2"}  # the request is untouched
    whole = Projection.of([ContextReads(values=frozenset({()}))], ())
    assert whole.narrow(context) is context
    assert Projection.of([ContextReads()], ()).narrow(context) == {}
