"""The tiered cache against a real redis-server: tiers, single flight, expiry, failures."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from authz.cache.breaker import Breaker
from authz.cache.redis import RedisOptions, RedisTier
from authz.cache.tiered import Tier, TieredCache
from authz.engine.model import AccessRequest, Decision, Effect, EntityUid, Identity
from authz.observe.metrics import CacheMetrics
from meshward.clock import FixedClock
from tests.integration.cache.conftest import Oracle
from tests.support.net import free_port
from tests.support.redis import RedisServer
from tests.support.wait import eventually_async

POLICIES = """
permit(principal, action == Action::"GET", resource == Service::"api")
  when { context.http.path like "/v1/*" };
"""
START = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def req(path: str = "/v1/a", rid: str = "1", expires: dt.datetime | None = None) -> AccessRequest:
    ident = Identity(EntityUid("Workload", "spiffe://td/a"), expires_at=expires)
    ctx = {"http": {"path": path, "headers": {"x-request-id": rid}}}
    return AccessRequest(ident, EntityUid("Action", "GET"), EntityUid("Service", "api"), ctx)


def make(
    clock: FixedClock, url: str | None, registry: CollectorRegistry | None = None, **kw: Any
) -> TieredCache:
    # Generous timeouts: these tests are about the tiers, not the per-command
    # budget (a loaded machine must not turn a Redis hit into a timeout).
    tier = RedisTier.connect(RedisOptions(url, timeout=5.0, connect_timeout=5.0)) if url else None
    observer = CacheMetrics(registry) if registry is not None else None
    return TieredCache(clock, redis=tier, observer=observer, **kw)


async def serve(cache: TieredCache, oracle: Oracle, request: AccessRequest) -> Any:
    return await cache.serve(request, oracle.keyspace, lambda: oracle.evaluate(request), None)


async def settle(cache: TieredCache) -> None:
    """Wait for the background Redis writes (a test needs them done; a request never waits)."""
    await eventually_async(lambda: not cache._pending, interval=0.005, message="Redis writes")


async def test_tiers_in_order_and_shared_between_replicas(redis: RedisServer) -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    a, b = make(clock, redis.url), make(clock, redis.url)
    first = await serve(a, oracle, req(rid="1"))
    assert first.tier is Tier.MISS and first.decision.allowed
    assert (await serve(a, oracle, req(rid="2"))).tier is Tier.LOCAL
    await settle(a)
    other = await serve(b, oracle, req(rid="3"))
    assert other.tier is Tier.REDIS and other.decision == first.decision
    assert (await serve(b, oracle, req(rid="4"))).tier is Tier.LOCAL
    assert oracle.calls == 1
    denied = await serve(a, oracle, req(path="/v2/a"))
    assert denied.tier is Tier.MISS and not denied.decision.allowed
    await a.aclose()
    await b.aclose()


async def test_single_flight_evaluates_once(redis: RedisServer) -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    cache = make(clock, redis.url)
    calls = 0

    async def slow() -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return oracle.evaluate(req())

    results = await asyncio.gather(
        *(cache.serve(req(rid=str(i)), oracle.keyspace, slow) for i in range(20))
    )
    assert calls == 1
    assert {r.decision for r in results} == {results[0].decision}
    await cache.aclose()


async def test_single_flight_survives_a_caller_giving_up(redis: RedisServer) -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    cache = make(clock, redis.url)

    async def slow() -> Any:
        await asyncio.sleep(0.05)
        return oracle.evaluate(req())

    leader = asyncio.ensure_future(cache.serve(req(), oracle.keyspace, slow))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(cache.serve(req(), oracle.keyspace, slow))
    await asyncio.sleep(0.01)
    leader.cancel()
    served = await follower
    assert served.decision.allowed
    await cache.aclose()


@pytest.mark.parametrize("shared", [False, True], ids=["local", "redis"])
async def test_credential_expiry_makes_entries_unusable(redis: RedisServer, shared: bool) -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    expires = START + dt.timedelta(seconds=30)
    writer = make(clock, redis.url, ttl_seconds=3600)
    assert (await serve(writer, oracle, req(expires=expires))).tier is Tier.MISS
    await settle(writer)
    reader = make(clock, redis.url, ttl_seconds=3600) if shared else writer
    expected = Tier.REDIS if shared else Tier.LOCAL
    clock.advance(29)
    assert (await serve(reader, oracle, req(expires=expires))).tier is expected
    clock.advance(1)  # the credential expires now
    assert (await serve(reader, oracle, req(expires=expires))).tier is Tier.BYPASS
    # A fresh credential of the same principal cannot reuse the old entry either.
    fresh = START + dt.timedelta(hours=1)
    other = make(clock, redis.url, ttl_seconds=3600)
    assert (await serve(other, oracle, req(expires=fresh))).tier is Tier.MISS
    for cache in {writer, reader, other}:
        await cache.aclose()


async def test_redis_ttl_is_rounded_down(redis: RedisServer) -> None:
    import redis.asyncio as aioredis

    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    cache = make(clock, redis.url, ttl_seconds=60)
    await serve(cache, oracle, req(expires=START + dt.timedelta(seconds=10, milliseconds=900)))
    await settle(cache)
    client = aioredis.Redis.from_url(redis.url)
    (key,) = await client.keys("meshward:decision:*")
    assert 0 < await client.ttl(key) <= 10
    short = make(clock, redis.url)
    await serve(short, oracle, req(path="/v1/b", expires=START + dt.timedelta(milliseconds=900)))
    await settle(short)
    assert len(await client.keys("meshward:decision:*")) == 1  # under 1 s: not shared
    await client.aclose()
    await cache.aclose()
    await short.aclose()


async def test_redis_down_decisions_flow_and_breaker_opens() -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    registry = CollectorRegistry()
    cache = make(
        clock,
        f"redis://127.0.0.1:{free_port()}/0",
        registry,
        breaker=Breaker(failure_threshold=2, reset_after=5),
        local_max_entries=0,
    )
    for i in range(5):
        served = await serve(cache, oracle, req(rid=str(i)))
        assert served.decision.allowed and served.tier is Tier.MISS
    assert cache.breaker.state.value == "open"
    assert registry.get_sample_value("meshward_cache_breaker_state", {"state": "open"}) == 1
    assert (
        registry.get_sample_value(
            "meshward_cache_errors_total", {"tier": "redis", "code": "unavailable"}
        )
        or 0
    ) >= 2  # reads and the background writes that started before it opened
    assert registry.get_sample_value("meshward_cache_requests_total", {"tier": "miss"}) == 5
    await cache.aclose()


async def test_slow_redis_times_out_and_checks_go_on(redis: RedisServer) -> None:
    import redis.asyncio as aioredis

    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    tier = RedisTier.connect(RedisOptions(redis.url, timeout=0.005))
    cache = TieredCache(clock, redis=tier, local_max_entries=0)
    admin = aioredis.Redis.from_url(redis.url)
    await admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    served = await serve(cache, oracle, req())
    assert served.decision.allowed and served.tier is Tier.MISS
    # A few milliseconds unloaded: the bound holds on a loaded machine and is
    # still far under the 1 s Redis is blocked.
    assert loop.time() - started < 0.5
    await admin.aclose()
    await cache.aclose()


async def test_undecodable_value_is_a_miss(redis: RedisServer) -> None:
    import redis.asyncio as aioredis

    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    registry = CollectorRegistry()
    cache = make(clock, redis.url, registry, local_max_entries=0)
    await serve(cache, oracle, req())
    await settle(cache)
    client = aioredis.Redis.from_url(redis.url)
    (key,) = await client.keys("meshward:decision:*")
    await client.set(key, b'{"f":"d1","e":"allow"}')
    served = await serve(cache, oracle, req(path="/v1/a"))
    assert served.tier is Tier.MISS
    assert (
        registry.get_sample_value(
            "meshward_cache_errors_total", {"tier": "redis", "code": "invalid_value"}
        )
        == 1
    )
    assert cache.breaker.state.value == "closed"
    await client.aclose()
    await cache.aclose()


async def test_acl_user_and_password(tmp_path: Any) -> None:
    from tests.support.redis import redis_server

    with redis_server(
        tmp_path / "acl",
        "--user",
        "default",
        "off",
        "--user",
        "pdp",
        "on",
        ">s3cret",
        "~*",
        "+@all",
    ) as server:
        clock = FixedClock(START)
        oracle = Oracle("v1", POLICIES)
        url = f"redis://pdp:s3cret@127.0.0.1:{server.port}/0"
        good, other = make(clock, url), make(clock, url)
        await serve(good, oracle, req())
        await settle(good)
        assert (await serve(other, oracle, req())).tier is Tier.REDIS
        registry = CollectorRegistry()
        bad = make(clock, f"redis://pdp:wrong@127.0.0.1:{server.port}/0", registry)
        served = await serve(bad, oracle, req())
        assert served.tier is Tier.MISS and served.decision.allowed
        assert (
            registry.get_sample_value(
                "meshward_cache_errors_total", {"tier": "redis", "code": "unavailable"}
            )
            == 1
        )
        for cache in (good, other, bad):
            await cache.aclose()


async def test_activation_clears_the_local_tier(redis: RedisServer) -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    cache = make(clock, None)
    await serve(cache, oracle, req())
    assert len(cache.local) == 1
    cache.on_activation("v2")
    assert len(cache.local) == 0
    await cache.aclose()


async def test_only_deterministic_decisions_are_cached() -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    cache = make(clock, None)
    policy_error = Decision(
        Effect.DENY, (), ("error while evaluating policy `p0`: no attribute `x`",), "v1"
    )
    engine_failure = Decision.deny("evaluation failed: RuntimeError: boom", policy_version="v1")
    first = await cache.serve(req(path="/x"), oracle.keyspace, lambda: policy_error)
    assert first.tier is Tier.MISS
    assert (await cache.serve(req(path="/x"), oracle.keyspace, lambda: policy_error)).tier is (
        Tier.LOCAL
    )
    for _ in range(2):  # an engine failure is evaluated again every time
        served = await cache.serve(req(path="/y"), oracle.keyspace, lambda: engine_failure)
        assert served.tier is Tier.BYPASS and served.decision == engine_failure
    await cache.aclose()


async def test_a_request_cedar_rejects_never_shares_an_answer() -> None:
    clock = FixedClock(START)
    oracle = Oracle("v1", POLICIES)
    cache = make(clock, None)
    good = req()
    assert (await serve(cache, oracle, good)).decision.allowed
    bad = AccessRequest(
        good.identity,
        good.action,
        good.resource,
        {"http": {"path": "/v1/a", "headers": {"x-request-id": "2", "x-null": None}}},
    )
    served = await serve(cache, oracle, bad)  # same read attributes, but Cedar rejects it
    assert served.tier is Tier.BYPASS
    assert served.decision == oracle.evaluate(bad) and not served.decision.allowed
    await cache.aclose()
