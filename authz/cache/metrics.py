"""Prometheus metrics of the decision cache (a :class:`~authz.cache.tiered.CacheObserver`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from authz.cache.breaker import BreakerState
from authz.cache.tiered import Tier

__all__ = ["CacheMetrics"]


class CacheMetrics:
    """``meshward_cache_requests_total{tier}``, ``meshward_cache_errors_total{tier,code}``,
    ``meshward_cache_breaker_state{state}`` (1 for the current state),
    ``meshward_cache_breaker_transitions_total{state}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
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
            "Redis circuit breaker: 1 for the current state",
            ["state"],
            registry=registry,
        )
        self.transitions = Counter(
            "meshward_cache_breaker_transitions",
            "Redis circuit breaker state changes, by the state entered",
            ["state"],
            registry=registry,
        )
        for tier in Tier:
            self.requests.labels(tier.value)
        for state in BreakerState:
            self.breaker.labels(state.value).set(0)
            self.transitions.labels(state.value)

    def served(self, tier: Tier) -> None:
        self.requests.labels(tier.value).inc()

    def error(self, tier: str, code: str) -> None:
        self.errors.labels(tier, code).inc()

    def breaker_changed(self, state: BreakerState) -> None:
        for each in BreakerState:
            self.breaker.labels(each.value).set(1 if each is state else 0)
        self.transitions.labels(state.value).inc()
