"""Prometheus metrics of the PDP: a decision observer plus readiness gauges.

One :class:`PdpMetrics` per process, on its own registry (no module globals);
``GET /metrics`` renders it. With ``--workers N`` the workers run in
prometheus_client's multi-process mode (:mod:`meshward.metrics`) and every
scrape answers with the sum over all workers; each gauge says how workers'
values combine (``multiprocess_mode``). Every metric is listed in
docs/operations.md#metrics.

What every decision adds (its count, its latency, the cache tier that
answered) is kept as plain integers by a :class:`~authz.observe.tally.Tally`
and added to these metrics when they are read.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.registry import Collector

from authz.cache.breaker import BreakerState
from authz.cache.tiered import Tier
from authz.engine.decider import DecisionRecord
from authz.observe.tally import BulkHistogram, Tally
from meshward.metrics import render

__all__ = ["AUTHN_PREFIX", "LATENCY_BUCKETS", "CacheMetrics", "PdpMetrics"]

# Decision errors that start with this are authentication failures; the rest
# of the code is the reason (authz.errors.AuthnError.code).
AUTHN_PREFIX = "authn:"

# Fine buckets: a cached decision takes tens of microseconds, a cold one a millisecond.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class PdpMetrics:
    """Decision counters by adapter and result, and a latency histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._tally = Tally(self.registry)  # first: it completes the metrics below when read
        self.decisions = Counter(
            "meshward_pdp_decisions",
            "Decisions by adapter and result (allow, deny, unauthenticated, error).",
            ["adapter", "result"],
            registry=self.registry,
        )
        self.latency = BulkHistogram(
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
            "1 once a policy version is active (the lowest over live workers).",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.authn_failures = Counter(
            "meshward_pdp_authn_failures",
            "Callers whose credentials were refused, by reason (expired, bad_signature, ...).",
            ["reason"],
            registry=self.registry,
        )
        self._collectors: list[Collector] = []
        self.cache = CacheMetrics(self.registry)

    def observe(self, record: DecisionRecord) -> None:
        tally = self._tally
        adapter = record.adapter
        key = (adapter, record.outcome)
        if not tally.is_bound(key):  # label lookups are costly: once per pair
            tally.bind_counter(key, self.decisions.labels(*key))
            tally.bind_histogram(adapter, self.latency.labels(adapter), LATENCY_BUCKETS)
        tally.count(key)
        tally.observe(adapter, record.latency_seconds)
        for error in record.errors:
            self.errors.labels(error[:64]).inc()
            if error.startswith(AUTHN_PREFIX):
                self.authn_failures.labels(error.removeprefix(AUTHN_PREFIX)[:64]).inc()

    def add_collector(self, collector: Collector) -> None:
        """Register a collector that reads process state at scrape time (not a file metric).

        In multi-process mode such a collector reports this worker's view, beside
        the merged file metrics of all workers.
        """
        self.registry.register(collector)
        self._collectors.append(collector)

    def render(self) -> bytes:
        return render(self.registry, self._collectors)


class CacheMetrics:
    """``meshward_cache_requests_total{tier}``, ``meshward_cache_errors_total{tier,code}``,
    ``meshward_cache_breaker_state{state}`` (1 for the current state),
    ``meshward_cache_breaker_transitions_total{state}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._tally = Tally(registry)  # first: it completes the metrics below when read
        self.requests = Counter(
            "meshward_cache_requests",
            "Decisions by the cache tier that answered (local, redis, miss, bypass)",
            ["tier"],
            registry=registry,
        )
        self.errors = Counter(
            "meshward_cache_errors",
            "Cache tier failures by code; every one was absorbed (the check went on)",
            ["tier", "code"],
            registry=registry,
        )
        self.breaker = Gauge(
            "meshward_cache_breaker_state",
            "Redis circuit breaker: 1 for the current state (any live worker's, with --workers)",
            ["state"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.transitions = Counter(
            "meshward_cache_breaker_transitions",
            "Redis circuit breaker state changes, by the state entered",
            ["state"],
            registry=registry,
        )
        # One child per tier, looked up once: a label lookup costs more than the count.
        for tier in Tier:
            self._tally.bind_counter(tier, self.requests.labels(tier.value))
        for state in BreakerState:
            self.breaker.labels(state.value).set(0)
            self.transitions.labels(state.value)

    def served(self, tier: Tier) -> None:
        self._tally.count(tier)

    def error(self, tier: str, code: str) -> None:
        self.errors.labels(tier, code).inc()

    def breaker_changed(self, state: BreakerState) -> None:
        for each in BreakerState:
            self.breaker.labels(each.value).set(1 if each is state else 0)
        self.transitions.labels(state.value).inc()
