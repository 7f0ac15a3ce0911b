"""PdpMetrics: what each decision record and each policy activation adds up to."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import InfoMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from authz.engine.decider import DecisionRecord
from authz.observe.metrics import LATENCY_BUCKETS, PdpMetrics

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
BASE = DecisionRecord(
    time=NOW, decision_id="d1", version="v1", principal='Workload::"spiffe://td/a"',
    action='Action::"GET"', resource='Service::"spiffe://td/b"', decision="allow",
    outcome="allow", reasons=("p1",), errors=(), latency_seconds=0.0002, cache_tier="none",
    adapter="envoy_grpc", method="GET", host="b", path="/",
)  # fmt: skip


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
    metrics.observe(dataclasses.replace(BASE, outcome="deny", decision="deny"))
    metrics.observe(dataclasses.replace(BASE, adapter="nginx", outcome="deny", decision="deny"))
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
    failed = dataclasses.replace(
        BASE, outcome="unauthenticated", decision="deny", errors=("authn:expired",)
    )
    metrics.observe(failed)
    metrics.observe(failed)
    metrics.observe(dataclasses.replace(BASE, errors=("request:bad_method",)))
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
