"""Build the decision cache from settings (called once, at PDP start-up)."""

from __future__ import annotations

import logging

from authz.cache.breaker import Breaker
from authz.cache.redis import RedisOptions, RedisTier, redact_url
from authz.cache.tiered import CacheObserver, TieredCache
from meshward.clock import Clock
from meshward.settings import CacheSettings

__all__ = ["build_cache", "redis_options"]

log = logging.getLogger(__name__)


def redis_options(settings: CacheSettings, url: str) -> RedisOptions:
    def path(value: object) -> str | None:
        return None if value is None else str(value)

    return RedisOptions(
        url=url,
        cluster=settings.redis_cluster,
        timeout=settings.redis_timeout_ms / 1000,
        connect_timeout=settings.redis_connect_timeout_ms / 1000,
        tls_ca_file=path(settings.redis_tls_ca_file),
        tls_cert_file=path(settings.redis_tls_cert_file),
        tls_key_file=path(settings.redis_tls_key_file),
    )


def build_cache(
    settings: CacheSettings,
    clock: Clock,
    redis_url: str | None = None,
    observer: CacheObserver | None = None,
) -> TieredCache:
    """The tiered cache; without ``redis_url`` only the in-process tier.

    No I/O happens here: Redis connections open on first use, so a Redis that
    is down at start-up only opens the breaker.
    """
    redis = RedisTier.connect(redis_options(settings, redis_url)) if redis_url else None
    log.info(
        "decision cache",
        extra={
            "fields": {
                "enabled": settings.enabled,
                "local_max_entries": settings.local_max_entries,
                "redis": redact_url(redis_url) if redis_url else None,
                "redis_cluster": settings.redis_cluster,
            }
        },
    )
    return TieredCache(
        clock,
        ttl_seconds=settings.ttl_seconds,
        local_max_entries=settings.local_max_entries,
        redis=redis,
        breaker=Breaker(settings.breaker_failures, settings.breaker_reset_seconds),
        observer=observer,
        max_pending_writes=settings.max_pending_writes,
        enabled=settings.enabled,
        time_attributes=settings.time_attributes,
    )
