"""The recent-decisions ring: bounded, oldest forgotten first."""

from __future__ import annotations

import datetime as dt
import sys

import pytest

from authz.engine.decider import DecisionRecord, Outcome, Verdict
from authz.engine.model import Decision
from authz.observe.recent import RecentDecisions


def _record(decision_id: str) -> DecisionRecord:
    verdict = Verdict(Outcome.DENY, Decision.deny(), decision_id)
    return DecisionRecord(
        verdict,
        None,
        version="v1",
        cache_tier="none",
        latency_seconds=0.0,
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp(),
        adapter="api",
        method="GET",
        path="/",
    )


def test_keeps_the_last_capacity_decisions() -> None:
    ring = RecentDecisions(2)
    for name in ("a", "b", "c"):
        ring.observe(_record(name))
    assert ring.get("a") is None
    found = ring.get("c")
    assert found is not None and found.decision_id == "c"
    assert len(ring) == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentDecisions(0)


def test_a_kept_record_holds_no_more_of_the_request_line_than_it_reports() -> None:
    verdict = Verdict(Outcome.DENY, Decision.deny("request:malformed_path"), "d")
    record = DecisionRecord(
        verdict,
        None,
        version="",
        cache_tier="none",
        latency_seconds=0.0,
        timestamp=0.0,
        adapter="envoy_grpc",
        method="G" * 10_000,
        host="h" * 100_000,
        path="/" + "p" * 1_000_000,
    )
    assert (len(record.method), len(record.host), len(record.path)) == (32, 256, 1024)
    assert sum(sys.getsizeof(getattr(record, n)) for n in ("method", "host", "path")) < 4096
