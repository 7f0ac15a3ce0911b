"""The decision cache: keys that are safe to share, an in-process tier, a Redis tier.

Pieces, each in its own module:

- :mod:`authz.cache.keys` — which parts of a request can change a decision
  (found by reading the policies' JSON form) and the key built from them (pure).
- :mod:`authz.cache.local` — bounded LRU with TTL, clock injected.
- :mod:`authz.cache.redis` — the shared tier on Redis or Redis Cluster.
- :mod:`authz.cache.breaker` — the circuit breaker in front of Redis.
- :mod:`authz.cache.tiered` — local -> Redis -> evaluate, with single flight.

Errors (below :class:`authz.errors.AuthzError`)::

    CacheError
    ├── CacheUnavailable      Redis did not answer in time, refused, or failed
    └── CacheValueInvalid     a stored value cannot be decoded (treated as a miss)

A cache error never reaches a caller of :class:`~authz.cache.tiered.TieredCache`:
the shared tier is skipped and the decision is evaluated.
"""

from __future__ import annotations

from authz.errors import CacheError, CacheUnavailable, CacheValueInvalid

__all__ = ["CacheError", "CacheUnavailable", "CacheValueInvalid"]
