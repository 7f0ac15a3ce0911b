"""What the overview page shows of the PDP's ``/metrics``: a snapshot, and rates between two.

Pure: :func:`snapshot` parses Prometheus text taken at a given time;
:class:`History` keeps the last snapshots (bounded) and turns neighbours into
per-second rates for the sparklines.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["History", "Snapshot", "quantile", "snapshot"]

OUTCOMES = ("allow", "deny", "unauthenticated", "error")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters read at ``at`` (totals since the PDP started)."""

    at: dt.datetime
    decisions: Mapping[str, float]
    cache: Mapping[str, float]
    breaker: str
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), sorted

    @property
    def total(self) -> float:
        return sum(self.decisions.values())

    @property
    def cache_hit_rate(self) -> float | None:
        hits = self.cache.get("local", 0.0) + self.cache.get("redis", 0.0)
        looked = hits + self.cache.get("miss", 0.0)
        return hits / looked if looked else None


def snapshot(text: str, at: dt.datetime) -> Snapshot:
    """Parse the PDP's ``/metrics`` text (decisions, cache tiers, breaker, latency buckets)."""
    decisions: dict[str, float] = dict.fromkeys(OUTCOMES, 0.0)
    cache: dict[str, float] = {}
    buckets: dict[float, float] = {}
    breaker = "unknown"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "meshward_pdp_decisions_total":
                result = labels.get("result", "")
                decisions[result] = decisions.get(result, 0.0) + sample.value
            elif sample.name == "meshward_cache_requests_total":
                tier = labels.get("tier", "")
                cache[tier] = cache.get(tier, 0.0) + sample.value
            elif sample.name == "meshward_cache_breaker_state" and sample.value >= 1:
                breaker = labels.get("state", "unknown")
            elif sample.name == "meshward_pdp_decision_seconds_bucket":
                bound = float(labels.get("le", "inf"))
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Snapshot(at, decisions, cache, breaker, tuple(sorted(buckets.items())))


def quantile(buckets: Iterable[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile (seconds) from cumulative histogram buckets, interpolated in a bucket."""
    rows = list(buckets)
    if not rows or rows[-1][1] <= 0:
        return None
    target = q * rows[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in rows:
        if count >= target:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            share = (target - lower_count) / span if span else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _diff(
    new: tuple[tuple[float, float], ...], old: tuple[tuple[float, float], ...]
) -> tuple[tuple[float, float], ...]:
    before = dict(old)
    return tuple((b, max(c - before.get(b, 0.0), 0.0)) for b, c in new)


@dataclass
class History:
    """The last ``size`` snapshots; rates come from neighbouring pairs."""

    size: int = 120
    _items: deque[Snapshot] = field(default_factory=deque)

    def add(self, item: Snapshot) -> None:
        self._items.append(item)
        while len(self._items) > self.size:
            self._items.popleft()

    @property
    def latest(self) -> Snapshot | None:
        return self._items[-1] if self._items else None

    def rates(self) -> list[float]:
        """Decisions per second between consecutive snapshots (a restart counts as zero)."""
        items = list(self._items)
        out: list[float] = []
        for old, new in itertools.pairwise(items):
            seconds = (new.at - old.at).total_seconds()
            out.append(max(new.total - old.total, 0.0) / seconds if seconds > 0 else 0.0)
        return out

    def recent_latency(self, q: float) -> float | None:
        """The ``q`` latency quantile over the window this history covers (all time if one)."""
        items = list(self._items)
        if not items:
            return None
        if len(items) == 1:
            return quantile(items[0].buckets, q)
        window = _diff(items[-1].buckets, items[0].buckets)
        return (
            quantile(window, q) if window and window[-1][1] > 0 else quantile(items[-1].buckets, q)
        )
