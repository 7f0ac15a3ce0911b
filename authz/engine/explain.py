"""Why a request was allowed or denied: a per-policy account of one evaluation (pure).

:func:`explain` answers "why was I denied?" for one request against one
:class:`~authz.engine.evaluation.Engine`. It is computed only when asked (``meshward
check --explain``, ``"explain": true`` on ``POST /v1/authorize``,
``GET /v1/decisions/{id}?explain=true``); the normal decision path never runs
it.

For every candidate policy (those the scope index returns, i.e. the policies
the engine evaluates) it reports:

- whether its **scope** (principal, action, resource) matches the request;
- each ``when``/``unless`` **condition** with its value (``true``, ``false``,
  ``error`` with Cedar's message, or ``skipped`` when an earlier part already
  decided the policy: Cedar stops there too), and for a condition that is a
  chain of ``&&``, each conjunct in the same way, so the first false or
  erring one is named;
- the policy's **outcome**: ``applies``, ``scope-mismatch``,
  ``conditions-false`` or ``error``; and whether it determined the decision.

It also lists the **entities** the evaluation used (the request's principal,
action and resource, their parents, and the static entities the candidate
policies and the context refer to), with parents and attribute names (values
are left out: they may be credentials' claims).

How: every scope and condition part becomes a tiny ``permit`` "probe" policy
(scope only, or one expression under an unconstrained scope); all probes go
to Cedar in one ``is_authorized`` call with the request's own entities, and
Cedar's diagnostics tell which probes held (``reasons``) and which erred
(``errors``). Nothing is re-implemented: Cedar evaluates every part.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cedarpy

from authz.engine.bundle import Policy
from authz.engine.cedar import to_cedar_request
from authz.engine.model import AccessRequest, Decision, EntityUid

if TYPE_CHECKING:
    from authz.engine.evaluation import Engine

__all__ = [
    "ConditionPart",
    "EntityUsed",
    "Explanation",
    "PolicyExplanation",
    "explain",
]

_PROBE_ERROR = re.compile(r"^error while evaluating policy `([^`]*)`: (.*)$", re.S)
_ALL = {"op": "All"}
MAX_TEXT = 300


@dataclass(frozen=True, slots=True)
class ConditionPart:
    """One ``when``/``unless`` clause, or one ``&&`` conjunct inside it, and its value."""

    text: str
    value: str  # "true" | "false" | "error" | "skipped"
    error: str = ""
    conjuncts: tuple[ConditionPart, ...] = ()
    kind: str = ""  # "when" | "unless" for a clause, "" for a conjunct

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "value": self.value}
        if self.kind:
            out = {"kind": self.kind, **out}
        if self.error:
            out["error"] = self.error
        if self.conjuncts:
            out["conjuncts"] = [c.to_json() for c in self.conjuncts]
        return out


@dataclass(frozen=True, slots=True)
class PolicyExplanation:
    """How one candidate policy fared."""

    id: str
    effect: str
    file: str
    line: int
    scope_matched: bool
    conditions: tuple[ConditionPart, ...]
    outcome: str  # "applies" | "scope-mismatch" | "conditions-false" | "error"
    determining: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "effect": self.effect,
            "file": self.file,
            "line": self.line,
            "scope_matched": self.scope_matched,
            "conditions": [c.to_json() for c in self.conditions],
            "outcome": self.outcome,
            "determining": self.determining,
        }


@dataclass(frozen=True, slots=True)
class EntityUsed:
    """An entity the evaluation could read: its uid, parents and attribute names."""

    uid: EntityUid
    parents: tuple[EntityUid, ...]
    attributes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": str(self.uid),
            "parents": [str(p) for p in self.parents],
            "attributes": list(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The account of one decision (``to_json`` is the ``explanation`` document)."""

    decision: Decision
    policies_total: int
    candidates: tuple[PolicyExplanation, ...]
    entities: tuple[EntityUsed, ...]
    summary: str
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "summary": self.summary,
            "policy_version": self.decision.policy_version,
            "policies_total": self.policies_total,
            "candidates": [c.to_json() for c in self.candidates],
            "entities": [e.to_json() for e in self.entities],
        }
        if self.error:
            out["error"] = self.error
        return out


# -- probes ---------------------------------------------------------------------


def _conjuncts(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The operands of a top-level ``a && b && c`` chain, in evaluation order."""
    inner = body.get("&&")
    if isinstance(inner, Mapping) and set(inner) == {"left", "right"}:
        return _conjuncts(inner["left"]) + _conjuncts(inner["right"])
    return [body]


def _scope_probe(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "effect": "permit",
        "principal": body["principal"],
        "action": body["action"],
        "resource": body["resource"],
        "conditions": [],
    }


def _expression_probe(expression: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "effect": "permit",
        "principal": _ALL,
        "action": _ALL,
        "resource": _ALL,
        "conditions": [{"kind": "when", "body": expression}],
    }


def _policy_set(probes: Mapping[str, Mapping[str, Any]]) -> cedarpy.PolicySet:
    document = {"staticPolicies": dict(probes), "templates": {}, "templateLinks": []}
    return cedarpy.PolicySet.from_json_str(json.dumps(document))


def _text(expression: Mapping[str, Any]) -> str:
    """Cedar text of one expression (rendered by Cedar from its JSON form)."""
    document = {
        "staticPolicies": {"p": _expression_probe(expression)},
        "templates": {},
        "templateLinks": [],
    }
    try:
        rendered = cedarpy.policies_from_json_str(json.dumps(document)).strip()
    except ValueError:
        return "(condition)"
    start, end = rendered.find("when {"), rendered.rfind("};")
    text = rendered[start + len("when {") : end].strip() if start >= 0 and end > start else rendered
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True, slots=True)
class _Results:
    true: frozenset[str]
    errors: Mapping[str, str]

    def value(self, probe: str) -> tuple[str, str]:
        if probe in self.errors:
            return "error", self.errors[probe]
        return ("true" if probe in self.true else "false"), ""


def _run(
    probes: Mapping[str, Mapping[str, Any]], request: AccessRequest, entities: cedarpy.Entities
) -> _Results:
    if not probes:
        return _Results(frozenset(), {})
    result = cedarpy.is_authorized(to_cedar_request(request), _policy_set(probes), entities)
    errors: dict[str, str] = {}
    for line in result.diagnostics.errors:
        match = _PROBE_ERROR.match(line)
        if match:
            errors[match.group(1)] = match.group(2)[:MAX_TEXT]
    return _Results(frozenset(result.diagnostics.reasons), errors)


# -- per policy -------------------------------------------------------------------


def _probes_of(position: int, body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    probes: dict[str, Mapping[str, Any]] = {f"s{position}": _scope_probe(body)}
    for j, condition in enumerate(body.get("conditions", ())):
        probes[f"c{position}.{j}"] = _expression_probe(condition["body"])
        parts = _conjuncts(condition["body"])
        if len(parts) > 1:
            for k, part in enumerate(parts):
                probes[f"c{position}.{j}.{k}"] = _expression_probe(part)
    return probes


def _skipped(condition: Mapping[str, Any]) -> ConditionPart:
    return ConditionPart(
        _text(condition["body"]), "skipped", kind=str(condition.get("kind", "when"))
    )


def _clause(
    position: int, j: int, condition: Mapping[str, Any], results: _Results
) -> ConditionPart:
    value, error = results.value(f"c{position}.{j}")
    parts = _conjuncts(condition["body"])
    conjuncts: list[ConditionPart] = []
    if len(parts) > 1:
        stopped = False
        for k, part in enumerate(parts):
            if stopped:
                conjuncts.append(ConditionPart(_text(part), "skipped"))
                continue
            part_value, part_error = results.value(f"c{position}.{j}.{k}")
            conjuncts.append(ConditionPart(_text(part), part_value, part_error))
            stopped = part_value != "true"
    return ConditionPart(
        _text(condition["body"]),
        value,
        error,
        tuple(conjuncts),
        kind=str(condition.get("kind", "when")),
    )


def _explain_policy(
    position: int, policy: Policy, results: _Results, decision: Decision
) -> PolicyExplanation:
    body = policy.json
    conditions = list(body.get("conditions", ()))
    scope_matched = results.value(f"s{position}")[0] == "true"
    parts: list[ConditionPart] = []
    outcome = "applies" if scope_matched else "scope-mismatch"
    for j, condition in enumerate(conditions):
        if outcome != "applies":
            parts.append(_skipped(condition))
            continue
        part = _clause(position, j, condition, results)
        parts.append(part)
        if part.value == "error":
            outcome = "error"
        elif (part.value == "true") != (part.kind == "when"):
            outcome = "conditions-false"
    return PolicyExplanation(
        policy.id,
        policy.effect,
        policy.file,
        policy.line,
        scope_matched,
        tuple(parts),
        outcome,
        policy.id in decision.reasons,
    )


def _summary(decision: Decision, candidates: Sequence[PolicyExplanation]) -> str:
    applying = [c for c in candidates if c.outcome == "applies"]
    forbids = [c.id for c in applying if c.effect == "forbid"]
    permits = [c.id for c in applying if c.effect == "permit"]
    erring = [c.id for c in candidates if c.outcome == "error"]
    if decision.allowed:
        return f"allowed: permitted by {', '.join(decision.reasons or tuple(permits))}"
    if forbids:
        return f"denied: forbidden by {', '.join(forbids)}"
    if decision.reasons:
        return f"denied (fail closed): {', '.join(decision.reasons)} could not be evaluated"
    if not candidates:
        return "denied by default: no policy's scope matches this request"
    scoped_permits = [c.id for c in candidates if c.scope_matched and c.effect == "permit"]
    if not scoped_permits:
        return (
            "denied by default: no permit policy's scope (principal, action, resource)"
            " matches this request"
        )
    detail = f"the conditions of {', '.join(scoped_permits)} do not hold"
    if erring:
        detail += f" ({', '.join(erring)} erred)"
    return f"denied by default: {detail}"


def explain(engine: Engine, request: AccessRequest) -> Explanation:
    """Explain ``engine``'s decision on ``request``.

    Never raises: a failure to explain is reported in ``error`` beside the
    decision (which is the engine's own, fail-closed as always).
    """
    decision = engine.evaluate(request)
    total = len(engine.bundle.policies)
    try:
        policies, entities, used = engine.evaluation_inputs(request)
        entities_used = tuple(EntityUsed(*item) for item in used)
        probes: dict[str, Mapping[str, Any]] = {}
        for position, policy in policies:
            probes.update(_probes_of(position, policy.json))
        results = _run(probes, request, entities)
        candidates = tuple(_explain_policy(i, p, results, decision) for i, p in policies)
    except Exception as exc:  # the explanation must never fail the caller
        error = f"cannot explain: {type(exc).__name__}: {str(exc)[:200]}"
        return Explanation(decision, total, (), (), error, error)
    return Explanation(decision, total, candidates, entities_used, _summary(decision, candidates))
