"""The shared tier on a real 3-master Redis Cluster."""

from __future__ import annotations

import datetime as dt
from functools import partial
from pathlib import Path

import redis.asyncio.cluster as aiocluster

from authz.cache.redis import RedisOptions, RedisTier
from authz.cache.tiered import Tier, TieredCache
from authz.engine.model import AccessRequest, EntityUid, Identity
from meshward.clock import FixedClock
from tests.integration.cache.conftest import Oracle
from tests.support.redis_cluster import redis_cluster
from tests.support.wait import eventually_async

POLICIES = """
permit(principal, action == Action::"GET", resource)
  when { context.http.path like "/v1/*" };
"""


def req(principal: int, path: str) -> AccessRequest:
    ident = Identity(EntityUid("Workload", f"spiffe://td/w{principal}"))
    return AccessRequest(
        ident,
        EntityUid("Action", "GET"),
        EntityUid("Service", "api"),
        {"http": {"path": path}},
    )


async def test_cluster_shares_decisions_across_slots(tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "cluster") as cluster:
        clock = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
        oracle = Oracle("v1", POLICIES)
        options = RedisOptions(cluster.url, cluster=True, timeout=5.0, connect_timeout=5.0)
        writer = TieredCache(clock, redis=RedisTier.connect(options))
        reader = TieredCache(clock, redis=RedisTier.connect(options))
        requests = [req(i, "/v1/a" if i % 2 else "/v2/a") for i in range(30)]
        for r in requests:
            served = await writer.serve(r, oracle.keyspace, partial(oracle.evaluate, r))
            assert served.tier is Tier.MISS
        await eventually_async(lambda: not writer._pending, message="the writes to Redis done")
        for r in requests:
            served = await reader.serve(r, oracle.keyspace, partial(oracle.evaluate, r))
            assert served.tier is Tier.REDIS
            assert served.decision == oracle.evaluate(r)
        assert reader.breaker.state.value == "closed"
        # The keys really are spread over the masters.
        client = aiocluster.RedisCluster.from_url(cluster.url)
        await client.initialize()
        per_node = [
            await client.execute_command("DBSIZE", target_nodes=node)
            for node in client.get_primaries()
        ]
        await client.aclose()
        assert sum(per_node) == len(requests) and all(n > 0 for n in per_node)
        await writer.aclose()
        await reader.aclose()
