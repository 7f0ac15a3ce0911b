"""The shared tier over TLS (``rediss://``) to a real redis-server, certificates made by openssl."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry

from authz.cache.redis import RedisOptions, RedisTier
from authz.cache.tiered import Tier, TieredCache
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.observe.metrics import CacheMetrics
from meshward.clock import FixedClock
from tests.integration.cache.conftest import Oracle
from tests.support.net import free_port
from tests.support.redis import redis_server
from tests.support.wait import eventually_async

POLICIES = 'permit(principal, action, resource) when { context.http.path == "/a" };'


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path, name: str) -> None:
    """``{name}-ca.pem`` and a server certificate for IP 127.0.0.1 signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem",
            "-subj", f"/CN={name} test CA", "-days", "1", cwd=d)  # fmt: skip
    openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=redis",
            cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.pem", "-CAkey",
            f"{name}-ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
            "-extfile", "san.ext", cwd=d)  # fmt: skip


def req() -> AccessRequest:
    return AccessRequest(
        Identity(EntityUid("Workload", "spiffe://td/a")),
        EntityUid("Action", "GET"),
        EntityUid("Service", "api"),
        {"http": {"path": "/a"}},
    )


async def test_rediss_with_the_right_ca_and_not_with_another(tmp_path: Path) -> None:
    make_pki(tmp_path, "server")
    make_pki(tmp_path, "other")
    tls_port = free_port()
    args = (
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tmp_path / "server.pem"),
        "--tls-key-file", str(tmp_path / "server.key"),
        "--tls-ca-cert-file", str(tmp_path / "server-ca.pem"),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    with redis_server(tmp_path / "redis", *args):
        url = f"rediss://127.0.0.1:{tls_port}/0"
        clock = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
        oracle = Oracle("v1", POLICIES)

        def cache(ca: str, registry: CollectorRegistry | None = None) -> TieredCache:
            options = RedisOptions(
                url, timeout=5.0, connect_timeout=5.0, tls_ca_file=str(tmp_path / ca)
            )
            observer = CacheMetrics(registry) if registry is not None else None
            return TieredCache(clock, redis=RedisTier.connect(options), observer=observer)

        writer, reader = cache("server-ca.pem"), cache("server-ca.pem")
        first = await writer.serve(req(), oracle.keyspace, lambda: oracle.evaluate(req()))
        assert first.tier is Tier.MISS and first.decision.allowed
        await eventually_async(lambda: not writer._pending, message="the write to Redis done")
        shared = await reader.serve(req(), oracle.keyspace, lambda: oracle.evaluate(req()))
        assert shared.tier is Tier.REDIS and shared.decision == first.decision

        registry = CollectorRegistry()
        untrusting = cache("other-ca.pem", registry)
        served = await untrusting.serve(req(), oracle.keyspace, lambda: oracle.evaluate(req()))
        assert served.tier is Tier.MISS and served.decision.allowed
        assert (
            registry.get_sample_value(
                "meshward_cache_errors_total", {"tier": "redis", "code": "unavailable"}
            )
            == 1
        )
        for c in (writer, reader, untrusting):
            await c.aclose()
