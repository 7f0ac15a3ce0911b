"""Tally: plain-int counts that a registry read always sees complete."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from authz.observe.tally import BulkHistogram, Tally

BOUNDS = (0.001, 0.01, 0.1)
# Below, on and above each bound, zero and beyond the last bound (+Inf).
VALUES = (0.0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.2, 7.0)


def test_a_registry_read_sees_every_count_without_an_explicit_fold() -> None:
    registry = CollectorRegistry()
    tally = Tally(registry, write_through=False)
    counter = Counter("t_requests", "test", ["tier"], registry=registry)
    tally.bind_counter("local", counter.labels("local"))
    for _ in range(3):
        tally.count("local")
    assert registry.get_sample_value("t_requests_total", {"tier": "local"}) == 3
    tally.count("local")
    assert registry.get_sample_value("t_requests_total", {"tier": "local"}) == 4


def test_tallied_histogram_equals_observing_each_value() -> None:
    registry = CollectorRegistry()
    tally = Tally(registry, write_through=False)
    bulk = BulkHistogram("t_bulk_seconds", "test", ["a"], buckets=BOUNDS, registry=registry)
    plain = Histogram("t_plain_seconds", "test", ["a"], buckets=BOUNDS, registry=registry)
    tally.bind_histogram("x", bulk.labels("x"), BOUNDS)
    for value in VALUES:
        tally.observe("x", value)
        plain.labels("x").observe(value)
    for bound in (*BOUNDS, float("inf")):
        le = {"a": "x", "le": "+Inf" if bound == float("inf") else str(bound)}
        got = registry.get_sample_value("t_bulk_seconds_bucket", le)
        assert got == registry.get_sample_value("t_plain_seconds_bucket", le), le
    for suffix in ("_count", "_sum"):
        got = registry.get_sample_value("t_bulk_seconds" + suffix, {"a": "x"})
        assert got == pytest.approx(
            registry.get_sample_value("t_plain_seconds" + suffix, {"a": "x"})
        )
    assert registry.get_sample_value("t_bulk_seconds_count", {"a": "x"}) == len(VALUES)


def test_write_through_adds_each_count_at_once() -> None:
    # The metrics live where the tally is never collected (as a multi-process
    # scrape reads the workers' files, not this process's registry).
    elsewhere, own = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_decisions", "test", registry=elsewhere)
    histogram = BulkHistogram("t_latency", "test", buckets=BOUNDS, registry=elsewhere)
    through = Tally(own, write_through=True)
    through.bind_counter("n", counter)
    through.bind_histogram("h", histogram, BOUNDS)
    through.count("n")
    through.observe("h", 0.005)
    assert elsewhere.get_sample_value("t_decisions_total") == 1
    assert elsewhere.get_sample_value("t_latency_bucket", {"le": "0.01"}) == 1
    kept = Tally(own, write_through=False)
    kept.bind_counter("n", counter)
    kept.count("n")
    assert elsewhere.get_sample_value("t_decisions_total") == 1  # not yet
    kept.fold()
    assert elsewhere.get_sample_value("t_decisions_total") == 2
