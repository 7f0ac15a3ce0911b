"""Redis SIGKILLed and restarted under a continuous stream of checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import pytest
from prometheus_client import CollectorRegistry

from authz.cache.breaker import Breaker
from authz.cache.redis import RedisOptions, RedisTier
from authz.cache.tiered import Tier, TieredCache
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.observe.metrics import CacheMetrics
from meshward.clock import SystemClock
from tests.integration.cache.conftest import Oracle
from tests.support.redis import RedisServer
from tests.support.wait import eventually_async

POLICIES = """
permit(principal, action == Action::"GET", resource)
  when { context.http.path like "/v1/*" };
"""


def req(i: int) -> AccessRequest:
    ident = Identity(EntityUid("Workload", f"spiffe://td/w{i % 40}"))
    path = "/v1/x" if i % 3 else "/v2/x"
    ctx = {"http": {"path": path, "headers": {"x-request-id": str(i)}}}
    return AccessRequest(ident, EntityUid("Action", "GET"), EntityUid("Service", "api"), ctx)


async def test_redis_killed_and_restarted_no_check_fails(redis: RedisServer) -> None:
    oracle = Oracle("v1", POLICIES)
    registry = CollectorRegistry()
    # A SIGKILLed Redis refuses connections at once, so the outage is seen without
    # a tight timeout; generous ones keep a loaded machine from adding failures
    # of its own (what is checked is the breaker's round trip, not the budget).
    cache = TieredCache(
        SystemClock(),
        redis=RedisTier.connect(RedisOptions(redis.url, timeout=5.0, connect_timeout=5.0)),
        breaker=Breaker(failure_threshold=2, reset_after=0.2),
        observer=CacheMetrics(registry),
        local_max_entries=0,  # every check goes to Redis
    )
    tiers: list[Tier] = []
    wrong: list[int] = []
    stop = asyncio.Event()

    def sample(name: str, **labels: str) -> float:
        value = registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def stream() -> None:
        i = 0
        while not stop.is_set():
            r = req(i)
            served = await cache.serve(r, oracle.keyspace, partial(oracle.evaluate, r))
            if served.decision != oracle.evaluate(r):
                wrong.append(i)
            tiers.append(served.tier)
            i += 1
            await asyncio.sleep(0.001)

    runner = asyncio.ensure_future(stream())
    try:
        await eventually_async(lambda: Tier.REDIS in tiers, 30, message="a check served by Redis")
        before_kill = len(tiers)
        await asyncio.to_thread(redis.kill)
        await eventually_async(
            lambda: sample("meshward_cache_breaker_transitions_total", state="open") >= 1,
            30,
            message="the breaker opened",
        )
        opened = len(tiers)
        # Checks keep flowing while Redis is dead.
        await eventually_async(
            lambda: len(tiers) >= opened + 20, 30, message="checks in the outage"
        )
        during_outage = len(tiers)
        await asyncio.to_thread(redis.start)
        # The shared tier comes back.
        await eventually_async(
            lambda: Tier.REDIS in tiers[during_outage:] and cache.breaker.state.value == "closed",
            30,
            message="Redis serving again, breaker closed",
        )
    finally:
        stop.set()
        await runner  # any exception from a check would surface here
        await cache.aclose()

    assert wrong == []
    assert during_outage > before_kill
    assert Tier.REDIS in tiers[:before_kill]
    assert Tier.REDIS in tiers[during_outage:]
    assert cache.breaker.state.value == "closed"

    assert sample("meshward_cache_breaker_transitions_total", state="open") >= 1
    assert sample("meshward_cache_breaker_transitions_total", state="closed") >= 1
    assert sample("meshward_cache_breaker_state", state="closed") == 1
    assert sample("meshward_cache_errors_total", tier="redis", code="unavailable") >= 2
    served = sum(sample("meshward_cache_requests_total", tier=t.value) for t in Tier)
    assert served == len(tiers)


@pytest.mark.slow
async def test_soak_repeated_outages_with_concurrent_streams(redis: RedisServer) -> None:
    """Three SIGKILL/restart cycles under 8 concurrent streams on two replicas."""
    oracle = Oracle("v1", POLICIES)
    registry = CollectorRegistry()
    caches = [
        TieredCache(
            SystemClock(),
            redis=RedisTier.connect(RedisOptions(redis.url, timeout=5.0, connect_timeout=5.0)),
            breaker=Breaker(failure_threshold=2, reset_after=0.2),
            observer=CacheMetrics(registry) if i == 0 else None,
            local_max_entries=0 if i == 0 else 50,
        )
        for i in range(2)
    ]
    wrong: list[int] = []
    counts = [0]
    stop = asyncio.Event()

    async def stream(offset: int) -> None:
        i = offset
        while not stop.is_set():
            r = req(i)
            cache = caches[i % 2]
            served = await cache.serve(r, oracle.keyspace, partial(oracle.evaluate, r))
            if served.decision != oracle.evaluate(r):
                wrong.append(i)
            counts[0] += 1
            i += 8
            await asyncio.sleep(0.001)

    def opened() -> float:
        value = registry.get_sample_value(
            "meshward_cache_breaker_transitions_total", {"state": "open"}
        )
        return 0.0 if value is None else value

    def closed() -> bool:
        return caches[0].breaker.state.value == "closed"

    def opened_since(before: float) -> Callable[[], bool]:
        return lambda: opened() > before

    runners = [asyncio.ensure_future(stream(k)) for k in range(8)]
    try:
        for _ in range(3):
            await asyncio.sleep(1.0)
            await eventually_async(closed, 30, message="the breaker closed")
            reopened = opened_since(opened())
            await asyncio.to_thread(redis.kill)
            await eventually_async(reopened, 30, message="the breaker opened")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(redis.start)
        await eventually_async(closed, 30, message="the breaker closed after the last outage")
    finally:
        stop.set()
        await asyncio.gather(*runners)
        for c in caches:
            await c.aclose()
    assert wrong == []
    assert counts[0] > 0
    assert caches[0].breaker.state.value == "closed"
    assert opened() >= 3
