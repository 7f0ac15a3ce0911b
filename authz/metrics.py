"""Prometheus metrics of the PDP: a decision observer plus readiness gauges.

One :class:`PdpMetrics` per process, on its own registry (no module globals);
``GET /metrics`` renders it. With ``--workers N`` each worker reports its own
series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from authz.decider import DecisionRecord

__all__ = ["LATENCY_BUCKETS", "PdpMetrics"]

# Fine buckets: a cached decision takes tens of microseconds, a cold one a millisecond.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class PdpMetrics:
    """Decision counters by adapter and result, and a latency histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter(
            "meshward_pdp_decisions",
            "Decisions by adapter and result (allow, deny, unauthenticated, error).",
            ["adapter", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meshward_pdp_decision_seconds",
            "Time from request facts to decision, authentication included.",
            ["adapter"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "meshward_pdp_decision_errors",
            "Decision errors by code (authn:*, request:*, internal, ...).",
            ["code"],
            registry=self.registry,
        )
        self.policies_loaded = Gauge(
            "meshward_pdp_policies_loaded",
            "1 once a policy version is active.",
            registry=self.registry,
        )

    def observe(self, record: DecisionRecord) -> None:
        self.decisions.labels(record.adapter, record.outcome).inc()
        self.latency.labels(record.adapter).observe(record.latency_seconds)
        for error in record.errors:
            self.errors.labels(error[:64]).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
