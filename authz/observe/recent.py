"""The last N decisions in memory, by decision id (``GET /v1/decisions/{id}``).

A decider observer: :meth:`RecentDecisions.observe` files the (immutable)
:class:`~authz.engine.decider.DecisionRecord` under its id and forgets the oldest
past ``capacity``: O(1), no copy, no formatting on the decision path. What a
reader gets is :func:`authz.observe.decisionlog.decision_entry` of it — redacted
exactly as the decision log is. Each PDP process (each worker) keeps its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from authz.engine.decider import DecisionRecord

__all__ = ["RecentDecisions"]


class RecentDecisions:
    """A bounded ring of decision records keyed by decision id."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._records: OrderedDict[str, DecisionRecord] = OrderedDict()

    def observe(self, record: DecisionRecord) -> None:
        records = self._records
        records[record.decision_id] = record
        if len(records) > self.capacity:
            records.popitem(last=False)

    def newest(self) -> Iterator[DecisionRecord]:
        """The records, newest first (a snapshot: safe while decisions keep coming)."""
        return reversed(list(self._records.values()))

    def get(self, decision_id: str) -> DecisionRecord | None:
        return self._records.get(decision_id)

    def __len__(self) -> int:
        return len(self._records)
