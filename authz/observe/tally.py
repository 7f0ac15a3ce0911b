"""Per-decision counts as plain integers, added to their Prometheus metrics when read.

A ``Counter.inc()`` takes a lock, and a ``Histogram.observe()`` a lock, a
bucket search and two increments: for a cached decision that is a sizeable
part of all the work meshward does. A :class:`Tally` keeps plain integers
instead (one dict update per count) and adds them to the metrics' children
when the registry is collected — a scrape, or ``registry.get_sample_value`` —
so what is read is always complete: the tally is registered *before* the
metrics it feeds, and a registry collects in registration order.

In prometheus_client's multi-process mode (``--workers N``, see
:mod:`meshward.metrics`) a scrape merges every worker's sample files and never
collects this process's registry: there each count is added at once
(``write_through``), exactly as a direct ``inc()`` would.

Used from one thread (the event loop's), like the decision path itself.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from meshward.metrics import multiprocess_dir

__all__ = ["BulkHistogram", "Tally"]


class BulkHistogram(Histogram):
    """A :class:`~prometheus_client.Histogram` that takes many observations at once."""

    def add(self, counts: Sequence[int], total: float) -> None:
        """Add ``counts[i]`` observations to bucket ``i`` (not cumulative) and ``total``
        to the sum: what ``sum(counts)`` calls of ``observe()`` would have added."""
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class Tally:
    """Counts for Prometheus children, kept as plain integers until the registry is read.

    :meth:`count` and :meth:`observe` take a key that :meth:`bind_counter` or
    :meth:`bind_histogram` tied to one labelled child (a key must be bound
    before it is counted).
    """

    def __init__(self, registry: CollectorRegistry, *, write_through: bool | None = None) -> None:
        self.write_through = (
            multiprocess_dir() is not None if write_through is None else write_through
        )
        self._counters: dict[Hashable, Counter] = {}
        self._counts: dict[Hashable, int] = {}
        self._histograms: dict[Hashable, tuple[BulkHistogram, tuple[float, ...]]] = {}
        self._observed: dict[Hashable, tuple[list[int], list[float]]] = {}
        registry.register(self)

    def describe(self) -> list[Any]:
        return []  # no samples of its own: it only completes the metrics it feeds

    def collect(self) -> Iterator[Any]:
        self.fold()
        return iter(())

    def bind_counter(self, key: Hashable, child: Counter) -> None:
        self._counters[key] = child

    def bind_histogram(self, key: Hashable, child: BulkHistogram, bounds: Sequence[float]) -> None:
        """``bounds``: the histogram's upper bounds, as given to it (``+Inf`` is added)."""
        upper = tuple(float(b) for b in bounds)
        if not upper or upper[-1] != math.inf:
            upper = (*upper, math.inf)
        self._histograms[key] = (child, upper)

    def is_bound(self, key: Hashable) -> bool:
        return key in self._counters or key in self._histograms

    def count(self, key: Hashable) -> None:
        """One more for the counter bound to ``key``."""
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        if self.write_through:
            self.fold()

    def observe(self, key: Hashable, value: float) -> None:
        """One observation of ``value`` for the histogram bound to ``key``."""
        pending = self._observed.get(key)
        if pending is None:
            pending = self._observed[key] = ([0] * len(self._histograms[key][1]), [0.0])
        # The first bucket whose upper bound is >= value, as Histogram.observe finds it.
        pending[0][bisect.bisect_left(self._histograms[key][1], value)] += 1
        pending[1][0] += value
        if self.write_through:
            self.fold()

    def fold(self) -> None:
        """Add every count kept so far to its metric."""
        counts, self._counts = self._counts, {}
        for key, count in counts.items():
            self._counters[key].inc(count)
        observed, self._observed = self._observed, {}
        for key, (buckets, total) in observed.items():
            self._histograms[key][0].add(buckets, total[0])
