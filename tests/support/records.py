"""Decision records as the decider makes them, for observer tests."""

from __future__ import annotations

import datetime as dt

from authz.engine.decider import DecisionRecord
from authz.engine.model import AccessRequest, Decision

__all__ = ["record_for"]

WHEN = dt.datetime(2026, 3, 1, 12, 0, 5, tzinfo=dt.UTC)


def record_for(
    request: AccessRequest,
    decision: Decision,
    decision_id: str = "d-0",
    *,
    time: dt.datetime = WHEN,
    latency: float = 0.001,
    tier: str = "none",
    adapter: str = "grpc",
) -> DecisionRecord:
    http = request.context.get("http") or {}
    return DecisionRecord(
        time=time,
        decision_id=decision_id,
        version=decision.policy_version,
        principal=str(request.principal),
        action=str(request.action),
        resource=str(request.resource),
        decision=decision.effect.value,
        outcome=decision.effect.value,
        reasons=decision.reasons,
        errors=decision.errors,
        latency_seconds=latency,
        cache_tier=tier,
        adapter=adapter,
        method=str(http.get("method", "")),
        host=str(http.get("host", "")),
        path=str(http.get("path", "")),
        request=request,
    )
