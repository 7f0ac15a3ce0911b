"""Token buckets per key, the one rate limiter every component uses.

The CA limits issuance per caller, the agent limits JWT-SVID requests per
workload and the console limits failed logins per client address. Time is
passed in (monotonic seconds), so the caller's injected clock decides.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

__all__ = ["Limiter", "RateLimiter"]


class Limiter(Protocol):
    """Says whether ``key`` may make one more request at ``now`` (monotonic seconds)."""

    def allow(self, key: str, now: float) -> bool: ...


class RateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; bounded memory.

    At most ``max_keys`` buckets are kept; the least recently seen key is
    forgotten first (it comes back with a full bucket).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed
