"""Decision records as the decider makes them, for observer tests."""

from __future__ import annotations

import datetime as dt

from authz.engine.decider import DecisionRecord, Outcome, Verdict
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
    built: bool = True,
    outcome: Outcome | None = None,
    line: tuple[str, str, str] | None = None,
) -> DecisionRecord:
    """The record of ``decision`` on ``request``; ``built=False``: as if the request
    could not be built (authentication failed, a malformed request).

    ``outcome``: the verdict's outcome when not the decision's effect
    (``unauthenticated``, ``error``); ``line``: the request line (method, host,
    path) as received, instead of the request's ``http`` context.
    """
    http = request.context.get("http") or {}
    method, host, path = line or (
        str(http.get("method", "")),
        str(http.get("host", "")),
        str(http.get("path", "")),
    )
    verdict = Verdict(
        outcome or Outcome(decision.effect.value), decision, decision_id, request.principal
    )
    return DecisionRecord(
        verdict,
        request if built else None,
        version=decision.policy_version,
        cache_tier=tier,
        latency_seconds=latency,
        timestamp=time.timestamp(),
        adapter=adapter,
        method=method,
        host=host,
        path=path,
    )
