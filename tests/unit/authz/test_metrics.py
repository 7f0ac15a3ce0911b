"""PdpMetrics: what each decision record and each policy activation adds up to."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import InfoMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from authz.engine.decider import DecisionRecord, Outcome
from authz.engine.model import AccessRequest, Decision, Effect, EntityUid, Identity
from authz.observe.metrics import LATENCY_BUCKETS, PdpMetrics
from tests.support.records import record_for

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
REQUEST = AccessRequest(
    Identity(EntityUid("Workload", "spiffe://td/a")),
    EntityUid("Action", "GET"),
    EntityUid("Service", "spiffe://td/b"),
)


def record(
    outcome: Outcome = Outcome.ALLOW, errors: tuple[str, ...] = (), adapter: str = "envoy_grpc"
) -> DecisionRecord:
    effect = Effect.ALLOW if outcome is Outcome.ALLOW else Effect.DENY
    decision = Decision(effect, ("p1",), errors, "v1")
    return record_for(
        REQUEST,
        decision,
        "d1",
        time=NOW,
        latency=0.0002,
        adapter=adapter,
        outcome=outcome,
        line=("GET", "b", "/"),
    )


BASE = record()


def samples(metrics: PdpMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def metrics() -> PdpMetrics:
    return PdpMetrics(CollectorRegistry())


def test_decisions_by_adapter_and_result(metrics: PdpMetrics) -> None:
    metrics.observe(BASE)
    metrics.observe(record(Outcome.DENY))
    metrics.observe(record(Outcome.DENY, adapter="nginx"))
    got = samples(metrics)
    total = "meshward_pdp_decisions_total"
    assert got[(total, (("adapter", "envoy_grpc"), ("result", "allow")))] == 1
    assert got[(total, (("adapter", "envoy_grpc"), ("result", "deny")))] == 1
    assert got[(total, (("adapter", "nginx"), ("result", "deny")))] == 1


def test_latency_buckets_resolve_50_microseconds_to_50_milliseconds(metrics: PdpMetrics) -> None:
    assert LATENCY_BUCKETS[0] <= 0.00005
    assert 0.05 in LATENCY_BUCKETS
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    metrics.observe(BASE)  # 200 µs
    got = samples(metrics)
    bucket = "meshward_pdp_decision_seconds_bucket"
    assert got[(bucket, (("adapter", "envoy_grpc"), ("le", "0.0001")))] == 0
    assert got[(bucket, (("adapter", "envoy_grpc"), ("le", "0.00025")))] == 1


def test_authentication_failures_by_reason(metrics: PdpMetrics) -> None:
    failed = record(Outcome.UNAUTHENTICATED, errors=("authn:expired",))
    metrics.observe(failed)
    metrics.observe(failed)
    metrics.observe(record(Outcome.DENY, errors=("request:bad_method",)))
    got = samples(metrics)
    assert got[("meshward_pdp_authn_failures_total", (("reason", "expired"),))] == 2
    assert ("meshward_pdp_authn_failures_total", (("reason", "bad_method"),)) not in got
    assert got[("meshward_pdp_decision_errors_total", (("code", "request:bad_method"),))] == 1


def test_scrape_time_collectors_are_rendered(metrics: PdpMetrics) -> None:
    class Version(Collector):
        def collect(self):
            family = InfoMetricFamily("meshward_test_policy", "test")
            family.add_metric([], {"version": "abc"})
            yield family

    metrics.add_collector(Version())
    assert samples(metrics)[("meshward_test_policy_info", (("version", "abc"),))] == 1
