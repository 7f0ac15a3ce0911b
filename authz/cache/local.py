"""The in-process tier: a bounded LRU whose entries expire (pure, no clock reads).

Every call takes ``now`` (seconds since the epoch, from the injected clock), so
expiry is exact under a :class:`~meshward.clock.FixedClock`: an entry stored
until ``t`` is served at ``t - 1`` and not at ``t``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["LocalTier"]

V = TypeVar("V")


class LocalTier(Generic[V]):
    """At most ``max_entries`` values, least recently used evicted first."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now: float) -> V | None:
        """The value stored under ``key`` if it is still valid at ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if now >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V, expires_at: float, now: float) -> None:
        """Store ``value`` until ``expires_at``; nothing is stored that is already expired."""
        if self.max_entries == 0 or expires_at <= now:
            return
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
