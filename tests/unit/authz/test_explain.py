"""Explanations: per-policy scope, condition and conjunct results, from a real bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.explain import Explanation
from authz.engine.requestdoc import parse_request

SCHEMA = """
entity Group;
entity User in [Group] { level: Long };
entity Service;
action GET appliesTo { principal: User, resource: Service, context: { path?: String } };
action DELETE appliesTo { principal: User, resource: Service, context: { path?: String } };
"""

POLICIES = """
@id("readers")
permit (principal in Group::"readers", action == Action::"GET", resource == Service::"docs")
when { context has path && context.path like "/public/*" };

@id("deleters")
permit (principal, action == Action::"DELETE", resource)
unless { principal.level < 5 };

@id("no-secrets")
forbid (principal, action, resource == Service::"docs")
when { context has path && context.path like "/secret*" };
"""

ENTITIES = """[
  {"uid": {"type": "Group", "id": "readers"}, "attrs": {}, "parents": []},
  {"uid": {"type": "User", "id": "ann"}, "attrs": {"level": 7},
   "parents": [{"type": "Group", "id": "readers"}]}
]"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    directory: Path = tmp_path_factory.mktemp("bundle")
    (directory / "schema.cedarschema").write_text(SCHEMA)
    (directory / "p.cedar").write_text(POLICIES)
    (directory / "entities.json").write_text(ENTITIES)
    return Engine(load_bundle(directory))


def _explain(engine: Engine, who: str, action: str, path: str | None) -> Explanation:
    context = {} if path is None else {"path": path}
    return engine.explain(
        parse_request(
            {
                "principal": f'User::"{who}"',
                "action": f'Action::"{action}"',
                "resource": 'Service::"docs"',
                "context": context,
            }
        )
    )


def _by_id(explanation: Explanation) -> dict[str, dict[str, object]]:
    return {c["id"]: c for c in explanation.to_json()["candidates"]}


def test_a_false_conjunct_is_named_and_later_ones_are_skipped(engine: Engine) -> None:
    explanation = _explain(engine, "ann", "GET", None)
    assert not explanation.decision.allowed
    readers = _by_id(explanation)["readers"]
    assert readers["scope_matched"] is True
    assert readers["outcome"] == "conditions-false"
    clause = readers["conditions"][0]  # type: ignore[index]
    assert clause["kind"] == "when" and clause["value"] == "false"
    assert [c["value"] for c in clause["conjuncts"]] == ["false", "skipped"]
    assert clause["conjuncts"][0]["text"] == "context has path"
    assert explanation.summary.startswith("denied by default")
    assert "readers" in explanation.summary


def test_the_permitting_policy_is_determining(engine: Engine) -> None:
    explanation = _explain(engine, "ann", "GET", "/public/a")
    assert explanation.decision.allowed
    readers = _by_id(explanation)["readers"]
    assert readers["outcome"] == "applies" and readers["determining"] is True
    assert explanation.summary == "allowed: permitted by readers"


def test_a_forbid_that_applies_is_named(engine: Engine) -> None:
    explanation = _explain(engine, "ann", "GET", "/secret/x")
    forbid = _by_id(explanation)["no-secrets"]
    assert forbid["outcome"] == "applies" and forbid["determining"] is True
    assert explanation.summary == "denied: forbidden by no-secrets"


def test_an_erring_condition_carries_cedars_message(engine: Engine) -> None:
    # "bob" is not in entities.json: principal.level cannot be read.
    explanation = _explain(engine, "bob", "DELETE", None)
    deleters = _by_id(explanation)["deleters"]
    assert deleters["outcome"] == "error"
    clause = deleters["conditions"][0]  # type: ignore[index]
    assert clause["kind"] == "unless" and clause["value"] == "error"
    assert "bob" in clause["error"] or "entity" in clause["error"]
    assert "deleters erred" in explanation.summary


def test_unless_true_makes_the_policy_not_apply(engine: Engine) -> None:
    explanation = engine.explain(
        parse_request(
            {
                "principal": 'User::"ann"',
                "action": 'Action::"DELETE"',
                "resource": 'Service::"docs"',
            }
        )
    )
    assert explanation.decision.allowed  # ann's level is 7: "unless level < 5" is false
    assert _by_id(explanation)["deleters"]["outcome"] == "applies"


def test_without_slicing_scope_mismatches_are_reported(engine: Engine) -> None:
    whole = Engine(engine.bundle, slicing=False)
    explanation = _explain(whole, "ann", "GET", None)
    deleters = _by_id(explanation)["deleters"]
    assert deleters["scope_matched"] is False
    assert deleters["outcome"] == "scope-mismatch"
    assert deleters["conditions"][0]["value"] == "skipped"  # type: ignore[index]


def test_entities_used_with_parents_and_attribute_names_only(engine: Engine) -> None:
    entities = {e["uid"]: e for e in _explain(engine, "ann", "GET", None).to_json()["entities"]}
    assert entities['User::"ann"'] == {
        "uid": 'User::"ann"',
        "parents": ['Group::"readers"'],
        "attributes": ["level"],
    }
    assert 'Group::"readers"' in entities


def test_the_explanation_agrees_with_the_decision(engine: Engine) -> None:
    for who, action, path in [("ann", "GET", "/public/x"), ("ann", "GET", "/x"), ("z", "GET", "")]:
        explanation = _explain(engine, who, action, path)
        request = parse_request(
            {
                "principal": f'User::"{who}"',
                "action": f'Action::"{action}"',
                "resource": 'Service::"docs"',
                "context": {"path": path},
            }
        )
        assert explanation.decision == engine.evaluate(request)
