"""``open_redis``: the one Redis client factory (cache tier and policy announcer)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from authz.cache.redis import RedisOptions, open_redis
from authz.cache.wiring import redis_options
from meshward.settings import CacheSettings


async def test_commands_time_out_and_subscribers_wait() -> None:
    options = RedisOptions(url="redis://127.0.0.1:1/0", timeout=0.007, connect_timeout=0.03)
    tier = open_redis(options)
    subscriber = open_redis(options, blocking_reads=True)
    assert isinstance(tier, Redis) and isinstance(subscriber, Redis)
    tier_kwargs = tier.connection_pool.connection_kwargs
    sub_kwargs = subscriber.connection_pool.connection_kwargs
    assert tier_kwargs["socket_timeout"] == 0.007
    assert sub_kwargs["socket_timeout"] is None
    assert sub_kwargs["socket_connect_timeout"] == tier_kwargs["socket_connect_timeout"] == 0.03
    await tier.aclose()
    await subscriber.aclose()


async def test_tls_files_reach_every_client() -> None:
    settings = CacheSettings(redis_tls_ca_file="/ca.pem")
    options = redis_options(settings, "rediss://127.0.0.1:1/0")
    for client in (open_redis(options), open_redis(options, blocking_reads=True)):
        assert isinstance(client, Redis)
        assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
        await client.aclose()


def test_cluster_option_gives_a_cluster_client() -> None:
    options = RedisOptions(url="redis://127.0.0.1:1/0", cluster=True)
    assert isinstance(open_redis(options, blocking_reads=True), RedisCluster)
