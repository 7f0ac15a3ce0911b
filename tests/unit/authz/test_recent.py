"""The recent-decisions ring: bounded, oldest forgotten first."""

from __future__ import annotations

import sys

import pytest

from authz.engine.decider import DecisionRecord
from authz.engine.model import AccessRequest, Decision, EntityUid, Identity
from authz.observe.recent import RecentDecisions
from tests.support.records import record_for

REQUEST = AccessRequest(
    Identity(EntityUid("Workload", "spiffe://td/a")),
    EntityUid("Action", "GET"),
    EntityUid("Service", "spiffe://td/b"),
)


def _record(decision_id: str) -> DecisionRecord:
    return record_for(REQUEST, Decision.deny(), decision_id, adapter="api", built=False)


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
    record = record_for(
        REQUEST,
        Decision.deny("request:malformed_path"),
        "d",
        adapter="envoy_grpc",
        built=False,
        line=("G" * 10_000, "h" * 100_000, "/" + "p" * 1_000_000),
    )
    assert (len(record.method), len(record.host), len(record.path)) == (32, 256, 1024)
    assert sum(sys.getsizeof(getattr(record, n)) for n in ("method", "host", "path")) < 4096
