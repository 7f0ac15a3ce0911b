"""``meshward policy who-can``: which principals the policies let do an action on a resource.

The candidates are every principal the bundle knows of: the static entities
that are not services or actions (users, workloads, groups — a group stands
for any member, asked as an unnamed ``User`` whose parent it is), the
principals the policies name in their scope (``principal == …``), and
``Anonymous::"anonymous"``. Each is asked with an empty context:
``allow`` means the policies allow it outright; ``conditional`` means a
permit's scope matches but its conditions (on the path, the peer, a token…)
decide, so the answer depends on the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from authz.engine.evaluation import Engine
from authz.engine.model import ANONYMOUS, AccessRequest, AuthMethod, EntityUid, Identity

__all__ = ["Answer", "who_can"]

_NOT_PRINCIPALS = frozenset({"Service", "Action"})


@dataclass(frozen=True, slots=True)
class Answer:
    principal: str
    answer: str  # "allow" | "conditional"
    policies: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"principal": self.principal, "answer": self.answer, "policies": list(self.policies)}


def _candidates(engine: Engine) -> Iterator[tuple[str, Identity]]:
    seen: set[EntityUid] = set()
    named: list[EntityUid] = []
    for record in engine.bundle.entity_records:
        named.append(EntityUid(str(record["uid"]["type"]), str(record["uid"]["id"])))
    for policy in engine.bundle.policies:
        scope = policy.json.get("principal", {})
        entity = scope.get("entity") if isinstance(scope, dict) else None
        if isinstance(entity, dict) and "type" in entity and "id" in entity:
            named.append(EntityUid(str(entity["type"]), str(entity["id"])))
    for uid in sorted(named):
        if uid in seen or uid.type.split("::")[-1] in _NOT_PRINCIPALS:
            continue
        seen.add(uid)
        if uid.type.split("::")[-1] == "Group":
            member = EntityUid("User", f"(any member of {uid})")
            yield f"any member of {uid}", Identity(member, (uid,), method=AuthMethod.ASSERTED)
        else:
            yield str(uid), Identity(uid, method=AuthMethod.ASSERTED)
    yield str(ANONYMOUS.principal), ANONYMOUS


def who_can(engine: Engine, action: EntityUid, resource: EntityUid) -> list[Answer]:
    """Every candidate principal that may (or, given the right request, might) do it."""
    out = []
    for label, identity in _candidates(engine):
        request = AccessRequest(identity, action, resource, {})
        decision = engine.evaluate(request)
        if decision.allowed:
            out.append(Answer(label, "allow", decision.reasons))
            continue
        if decision.reasons:  # a forbid applies outright
            continue
        explanation = engine.explain(request)
        maybe = tuple(
            c.id
            for c in explanation.candidates
            if c.effect == "permit" and c.scope_matched and c.outcome != "applies"
        )
        if maybe:
            out.append(Answer(label, "conditional", maybe))
    return out
