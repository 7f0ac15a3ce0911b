"""Two real ``meshward pdp serve`` processes sharing one real Redis through ``--redis-url``."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.support.envoy import SHOP, check_request
from tests.support.pdp import PdpProcess, pdp_process
from tests.support.redis import RedisServer
from tests.support.wait import eventually

FRONTEND = f"{SHOP}/frontend"
ORDERS = f"{SHOP}/orders"


def tiers(pdp: PdpProcess) -> dict[str, float]:
    text = httpx.get(f"{pdp.http_url}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "meshward_cache_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["tier"]] = sample.value
    return out


def check(pdp: PdpProcess, path: str, rid: str) -> int:
    with grpc.insecure_channel(pdp.grpc_addr) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        request = check_request(
            path=path,
            principal=FRONTEND,
            certificate=pdp.peer_certificate(FRONTEND),
            destination=ORDERS,
            headers={"x-request-id": rid},
        )
        return int(stub.Check(request, timeout=30).status.code)


def test_replicas_share_decisions_through_redis(tmp_path: Path, redis: RedisServer) -> None:
    # What is checked is the sharing, not the 5 ms production budget per Redis
    # command: on a loaded machine a command can take longer, be dropped, and
    # open the breaker.
    env = {
        "MESHWARD_CACHE__REDIS_TIMEOUT_MS": "10000",
        "MESHWARD_CACHE__REDIS_CONNECT_TIMEOUT_MS": "10000",
    }
    with (
        pdp_process(tmp_path / "a", "--redis-url", redis.url, env=env) as a,
        pdp_process(tmp_path / "b", "--redis-url", redis.url, env=env) as b,
    ):
        assert check(a, "/api/orders/1", "r1") == code_pb2.OK
        assert check(a, "/api/orders/1", "r2") == code_pb2.OK  # unread header: reused
        assert check(a, "/admin", "r3") == code_pb2.PERMISSION_DENIED  # read path: not reused
        assert tiers(a) == {"local": 1, "redis": 0, "miss": 2, "bypass": 0}
        # The other replica finds both decisions in Redis (writes land in the
        # background: on a loaded machine that can take a few seconds).
        eventually(lambda: len(redis_keys(redis)) >= 2, 20, message="the decisions in Redis")
        assert check(b, "/api/orders/1", "r4") == code_pb2.OK
        assert check(b, "/admin", "r5") == code_pb2.PERMISSION_DENIED
        assert tiers(b) == {"local": 0, "redis": 2, "miss": 0, "bypass": 0}


def redis_keys(redis: RedisServer) -> list[bytes | str]:
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        return list(client.keys("meshward:decision:*"))
    finally:
        client.close()
