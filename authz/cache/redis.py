"""The shared tier: decisions in Redis (standalone, TLS, ACL user) or Redis Cluster.

Values are small and versioned JSON documents (``{"f": "d1", ...}``) that carry
the instant they stop being valid, so a reader never serves an entry past the
credential's expiry even when Redis' own ``EX`` (real time, whole seconds)
has not removed it yet. Each command is bounded by a timeout of a few
milliseconds and redis-py's own retries are off: a slow or dead Redis costs one
timeout, then the breaker in :mod:`authz.cache.tiered` keeps it out of the way.

Every Redis or decoding failure is raised as a :class:`~authz.cache.CacheError`.

:func:`open_redis` is the one place a Redis client is made (cluster, TLS,
timeouts from :class:`RedisOptions`): this tier and the policy announcer
(:mod:`authz.sources.announce`) both use it.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from authz.cache import CacheUnavailable, CacheValueInvalid
from authz.engine.model import Decision, Effect

__all__ = [
    "VALUE_FORMAT",
    "CachedDecision",
    "RedisClient",
    "RedisOptions",
    "RedisTier",
    "open_redis",
    "decode_value",
    "encode_value",
    "redact_url",
]

VALUE_FORMAT = "d1"
KEY_PREFIX = "meshward:decision:"


@dataclass(frozen=True, slots=True)
class CachedDecision:
    """A decision and the instant (seconds since the epoch) it stops being valid."""

    decision: Decision
    expires_at: float


def encode_value(entry: CachedDecision) -> bytes:
    d = entry.decision
    doc = {
        "f": VALUE_FORMAT,
        "e": d.effect.value,
        "r": list(d.reasons),
        "x": list(d.errors),
        "v": d.policy_version,
        "t": entry.expires_at,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_value(raw: bytes) -> CachedDecision:
    """Parse a stored value; anything unexpected raises :class:`CacheValueInvalid`."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("f") != VALUE_FORMAT:
            raise CacheValueInvalid("unknown value format")
        reasons, errors, expires = doc["r"], doc["x"], doc["t"]
        if not (
            isinstance(reasons, list)
            and isinstance(errors, list)
            and all(isinstance(x, str) for x in (*reasons, *errors))
            and isinstance(doc["v"], str)
            and isinstance(expires, int | float)
            and not isinstance(expires, bool)
            and math.isfinite(expires)
        ):
            raise CacheValueInvalid("malformed value")
        decision = Decision(Effect(doc["e"]), tuple(reasons), tuple(errors), doc["v"])
    except CacheValueInvalid:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheValueInvalid("undecodable value") from exc
    return CachedDecision(decision, float(expires))


def redact_url(url: str) -> str:
    """``url`` with any password replaced, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


RedisClient = Redis | RedisCluster


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis. The URL may hold ``user:password@`` and use ``rediss://``."""

    url: str
    cluster: bool = False
    timeout: float = 0.005
    connect_timeout: float = 0.05
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_connections: int = 64


def open_redis(options: RedisOptions, *, blocking_reads: bool = False) -> RedisClient:
    """The Redis (or Redis Cluster) client for ``options``; no I/O yet.

    Commands time out after ``options.timeout`` and are not retried, unless
    ``blocking_reads`` (a subscriber waiting for messages): then reads wait,
    while connecting still times out after ``options.connect_timeout``.
    """
    kwargs: dict[str, Any] = {
        "socket_timeout": None if blocking_reads else options.timeout,
        "socket_connect_timeout": options.connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": options.max_connections,
    }
    if options.url.startswith("rediss://"):
        kwargs.update(
            ssl_ca_certs=options.tls_ca_file,
            ssl_certfile=options.tls_cert_file,
            ssl_keyfile=options.tls_key_file,
        )
    if options.cluster:
        return RedisCluster.from_url(options.url, **kwargs)
    return Redis.from_url(options.url, **kwargs)


class RedisTier:
    """Get and set cached decisions; every failure is a :class:`CacheUnavailable`."""

    def __init__(self, client: RedisClient, timeout: float, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self.timeout = timeout
        self.prefix = prefix

    @classmethod
    def connect(cls, options: RedisOptions) -> RedisTier:
        """A tier on ``options.url`` (no I/O yet: connections open on first use)."""
        return cls(open_redis(options), options.timeout)

    async def get(self, key: str) -> CachedDecision | None:
        raw = await self._call(self._client.get(self.prefix + key))
        if raw is None:
            return None
        if not isinstance(raw, bytes):
            raise CacheValueInvalid("unexpected reply type")
        return decode_value(raw)

    async def set(self, key: str, entry: CachedDecision, ttl_seconds: int) -> None:
        """``SET key value EX ttl``; a TTL under one second is not stored at all."""
        if ttl_seconds < 1:
            return
        await self._call(self._client.set(self.prefix + key, encode_value(entry), ex=ttl_seconds))

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except (redis_errors.RedisError, OSError):  # closing a dead connection
            return

    async def _call(self, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except TimeoutError as exc:
            raise CacheUnavailable("redis timeout") from exc
        except (redis_errors.RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from exc
