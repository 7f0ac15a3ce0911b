"""Local -> Redis -> evaluate, never wrong and never in the way.

:meth:`TieredCache.get_or_evaluate` answers a request from the first tier that
holds a valid decision, else evaluates it:

1. No key (:class:`~authz.cache.keys.KeySpace` says time-dependent or not
   encodable), cache disabled, or a credential already expired: evaluate,
   tier ``bypass``.
2. The in-process LRU: tier ``local``.
3. Concurrent misses for one key share one lookup-and-evaluation (single
   flight); the shared work runs in its own task, so a caller that gives up
   does not cancel it for the others.
4. Redis, when configured and the breaker lets the call through: tier ``redis``.
   A Redis error is counted, feeds the breaker, and the request goes on.
5. Evaluate: tier ``miss``. The Redis write is started in the background and
   never awaited by the request.

Every entry lives until ``min(now + ttl, credential expiry)``, checked against
the injected clock on every read. Entries are keyed by policy version, so a new
version is a new key space; :meth:`TieredCache.on_activation` also drops the
in-process tier so memory is not held by a version no longer served.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import re
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from authz.cache import CacheError, CacheUnavailable
from authz.cache.breaker import Breaker, BreakerState
from authz.cache.keys import DEFAULT_TIME_ATTRIBUTES, ContextReads, KeySpace
from authz.cache.local import LocalTier
from authz.cache.redis import CachedDecision, RedisTier
from authz.engine.model import AccessRequest, Decision
from meshward.clock import Clock

__all__ = [
    "CacheObserver",
    "CacheableEngine",
    "NullObserver",
    "Served",
    "Tier",
    "TieredCache",
]

log = logging.getLogger(__name__)


class Tier(StrEnum):
    """Who answered: a metric label; :attr:`log_label` for the decision log."""

    LOCAL = "local"
    REDIS = "redis"
    MISS = "miss"  # evaluated, then cached
    BYPASS = "bypass"  # evaluated, not cacheable

    @property
    def log_label(self) -> str:
        return "none" if self in (Tier.MISS, Tier.BYPASS) else self.value


class CachedPolicy(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def json(self) -> Mapping[str, Any]: ...


class CacheableEngine(Protocol):
    """The cache's seam: what it needs from an engine to key and answer its decisions.

    :class:`authz.engine.evaluation.Engine` is one. ``version`` and
    ``policy_reads`` (the context each policy reads, by policy id) make the key
    space; ``candidates`` is the engine's slicing; ``evaluate`` answers a miss.
    """

    @property
    def version(self) -> str: ...
    @property
    def policy_reads(self) -> Mapping[str, ContextReads]: ...
    def evaluate(self, request: AccessRequest) -> Decision: ...
    def candidates(self, request: AccessRequest) -> Sequence[CachedPolicy]: ...


@dataclass(frozen=True, slots=True)
class Served:
    decision: Decision
    tier: Tier


class CacheObserver(Protocol):
    """Where the cache reports what happened (Prometheus in production)."""

    def served(self, tier: Tier) -> None: ...
    def error(self, tier: str, code: str) -> None: ...
    def breaker_changed(self, state: BreakerState) -> None: ...


class NullObserver:
    def served(self, tier: Tier) -> None:
        return None

    def error(self, tier: str, code: str) -> None:
        return None

    def breaker_changed(self, state: BreakerState) -> None:
        return None


Evaluate = Callable[[], Decision | Awaitable[Decision]]


# Errors a decision may carry and still be cached: Cedar's per-policy evaluation
# errors (a function of what the policy read, hence of the key) and the engine's
# fail-closed note that accompanies them. Anything else (the engine failing as a
# whole) may be transient or depend on what the key leaves out: never cached.
_POLICY_ERROR = re.compile(r"error while evaluating policy `")
_FAIL_CLOSED_NOTE = "a forbid policy could not be evaluated: denied (fail closed)"


def _deterministic(decision: Decision) -> bool:
    return all(e == _FAIL_CLOSED_NOTE or _POLICY_ERROR.match(e) for e in decision.errors)


async def _run(evaluate: Evaluate) -> Decision:
    result = evaluate()
    if inspect.isawaitable(result):
        return await result
    return result


class TieredCache:
    """The decision cache in front of the engine; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        *,
        ttl_seconds: float = 60.0,
        local_max_entries: int = 100_000,
        redis: RedisTier | None = None,
        breaker: Breaker | None = None,
        observer: CacheObserver | None = None,
        max_pending_writes: int = 1024,
        enabled: bool = True,
        time_attributes: Collection[str] = DEFAULT_TIME_ATTRIBUTES,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be > 0")
        self._clock = clock
        self.ttl_seconds = ttl_seconds
        self.enabled = enabled
        self._local: LocalTier[Decision] = LocalTier(local_max_entries)
        self._redis = redis
        self._observer: CacheObserver = observer or NullObserver()
        self.breaker = breaker or Breaker()
        self.breaker.on_change = self._observer.breaker_changed
        self._observer.breaker_changed(self.breaker.state)
        self._max_pending = max_pending_writes
        self._pending: set[asyncio.Task[None]] = set()
        self._inflight: dict[str, asyncio.Task[Served]] = {}
        self.time_attributes = frozenset(time_attributes)
        self._spaces: weakref.WeakKeyDictionary[CacheableEngine, KeySpace] = (
            weakref.WeakKeyDictionary()
        )
        # The active engine, without a lookup.
        self._last: tuple[CacheableEngine, KeySpace] | None = None

    @property
    def local(self) -> LocalTier[Decision]:
        return self._local

    async def get_or_evaluate(
        self, request: AccessRequest, engine: CacheableEngine
    ) -> tuple[Decision, str]:
        """The decider's seam: the decision for ``request`` from ``engine`` and the
        tier that answered as the decision log names it (``local``, ``redis`` or
        ``none`` when the engine did).

        The key space is built from ``engine``'s policies once per engine.
        """
        keyspace = self._keyspace(engine)
        identity = request.identity
        scope = (identity.principal, identity.parents, request.action, request.resource)
        candidates = keyspace.scope_memo.get(scope)
        if candidates is None:
            # The engine's slicing depends on exactly these four (and the version).
            candidates = tuple(p.id for p in engine.candidates(request))
            keyspace.remember_scope(scope, candidates)
        served = await self.serve(
            request, keyspace, functools.partial(engine.evaluate, request), candidates
        )
        return served.decision, served.tier.log_label

    async def serve(
        self,
        request: AccessRequest,
        keyspace: KeySpace,
        evaluate: Evaluate,
        candidates: Iterable[str] | None = None,
    ) -> Served:
        """The decision for ``request`` and the tier that answered.

        ``evaluate`` computes the decision afresh (sync or async); ``candidates``
        are the ids of the policies that can apply, from the engine's slicing.
        Exceptions from ``evaluate`` propagate (nothing is cached); cache
        failures never do.
        """
        now = self._clock.now().timestamp()
        key = keyspace.key(request, candidates) if self.enabled else None
        expires_at = self._expiry(request, now)
        if key is None or expires_at <= now:
            decision = await _run(evaluate)
            self._observer.served(Tier.BYPASS)
            return Served(decision, Tier.BYPASS)
        hit = self._local.get(key, now)
        if hit is not None:
            self._observer.served(Tier.LOCAL)
            return Served(hit, Tier.LOCAL)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fill(key, evaluate, expires_at))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        served = await asyncio.shield(task)
        self._observer.served(served.tier)
        return served

    def on_activation(self, version: str) -> None:
        """A new policy version is active: drop the in-process tier and old key spaces."""
        self._local.clear()
        self._spaces.clear()
        self._last = None
        log.info("decision cache: local tier cleared", extra={"fields": {"version": version}})

    async def aclose(self, timeout: float = 1.0) -> None:
        """Let background writes finish (bounded), then close Redis."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
        for task in list(self._pending):
            task.cancel()
        if self._redis is not None:
            await self._redis.aclose()

    def _keyspace(self, engine: CacheableEngine) -> KeySpace:
        """The key space of ``engine``, built once per engine."""
        last = self._last
        if last is not None and last[0] is engine:
            return last[1]
        found = self._spaces.get(engine)
        if found is None:
            # The engine analyses each policy once, on first use: nothing here walks
            # all of them on the serving loop.
            found = KeySpace(
                engine.version,
                {},
                time_attributes=self.time_attributes,
                reads=engine.policy_reads,
            )
            self._spaces[engine] = found
        self._last = (engine, found)
        return found

    def _expiry(self, request: AccessRequest, now: float) -> float:
        expires_at = now + self.ttl_seconds
        credential = request.identity.expires_at
        if credential is not None:
            expires_at = min(expires_at, credential.timestamp())
        return expires_at

    def _forget(self, key: str, task: asyncio.Task[Served]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _fill(self, key: str, evaluate: Evaluate, expires_at: float) -> Served:
        entry = await self._redis_get(key)
        now = self._clock.now().timestamp()
        if entry is not None and entry.expires_at > now:
            valid_until = min(entry.expires_at, expires_at)
            if valid_until > now:
                self._local.put(key, entry.decision, valid_until, now)
                return Served(entry.decision, Tier.REDIS)
        decision = await _run(evaluate)
        if not _deterministic(decision):
            return Served(decision, Tier.BYPASS)
        now = self._clock.now().timestamp()
        self._local.put(key, decision, expires_at, now)
        self._redis_set_later(key, CachedDecision(decision, expires_at), expires_at - now)
        return Served(decision, Tier.MISS)

    async def _redis_get(self, key: str) -> CachedDecision | None:
        if self._redis is None or not self.breaker.allow(self._clock.monotonic()):
            return None
        try:
            entry = await self._redis.get(key)
        except CacheUnavailable as exc:
            self.breaker.failure(self._clock.monotonic())
            self._observer.error("redis", exc.code)
            return None
        except CacheError as exc:  # Redis answered, the value was bad: a miss
            self.breaker.success()
            self._observer.error("redis", exc.code)
            return None
        self.breaker.success()
        return entry

    def _redis_set_later(self, key: str, entry: CachedDecision, ttl: float) -> None:
        seconds = math.floor(ttl)  # never outlive the credential: round down
        if self._redis is None or seconds < 1:
            return
        if len(self._pending) >= self._max_pending:
            self._observer.error("redis", "write_dropped")
            return
        if not self.breaker.allow(self._clock.monotonic()):
            return
        task = asyncio.ensure_future(self._redis_set(key, entry, seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _redis_set(self, key: str, entry: CachedDecision, seconds: int) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(key, entry, seconds)
        except CacheError as exc:
            self.breaker.failure(self._clock.monotonic())
            self._observer.error("redis", exc.code)
            return
        self.breaker.success()
