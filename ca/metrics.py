"""The CA's Prometheus metrics, on a registry of its own (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CaMetrics"]


class CaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.issued = Counter(
            "meshward_ca_issuance",
            "SVID issuance attempts by kind, attestation method and result (ok or error code).",
            ["kind", "method", "result"],
            registry=self.registry,
        )
        self.svid_ttl = Histogram(
            "meshward_ca_svid_ttl_seconds",
            "Lifetime of issued SVIDs.",
            ["kind"],
            buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400),
            registry=self.registry,
        )
        self.signing_ca_not_after = Gauge(
            "meshward_ca_signing_ca_not_after_seconds",
            "notAfter of the active signing CA, as a Unix time.",
            registry=self.registry,
        )
        self.bundle_sequence = Gauge(
            "meshward_ca_bundle_sequence",
            "spiffe_sequence of the served bundle.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "meshward_ca_rate_limited",
            "Issuance requests refused by the per-caller rate limit.",
            registry=self.registry,
        )
