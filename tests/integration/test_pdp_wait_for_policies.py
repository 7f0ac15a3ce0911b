"""gRPC health and /readyz say NOT_SERVING until a policy version passes the gate."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import httpx
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.cli import REPO
from tests.support.envoy import SHOP, check_request
from tests.support.pdp import PdpProcess, pdp_process
from tests.support.wait import eventually

SERVICES = ("", "envoy.service.auth.v3.Authorization")


def _health(channel: grpc.Channel) -> set[int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return {
        stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        for name in SERVICES
    }


def _ready(pdp: PdpProcess) -> int:
    return httpx.get(f"{pdp.http_url}/readyz").status_code


def test_not_serving_until_the_policies_are_fixed(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    good = (policies / "workloads.cedar").read_text()
    (policies / "workloads.cedar").write_text(good + "\npermit (principal, action,\n")
    with (
        pdp_process(
            tmp_path / "pdp",
            policies=policies,
            pdp_settings={"wait_for_policies": True},
            wait_ready=False,
        ) as pdp,
        grpc.insecure_channel(pdp.grpc_addr) as channel,
    ):
        grpc.channel_ready_future(channel).result(timeout=10)
        assert _health(channel) == {health_pb2.HealthCheckResponse.NOT_SERVING}
        assert _ready(pdp) == 503
        # Fail closed while nothing is active: a check is denied, not crashed.
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        response = stub.Check(
            check_request(
                principal=f"{SHOP}/frontend", certificate=pdp.peer_certificate(f"{SHOP}/frontend")
            ),
            timeout=5,
        )
        assert response.status.code != code_pb2.OK
        # Still waiting after a few polls of the directory.
        time.sleep(2.5)
        assert _health(channel) == {health_pb2.HealthCheckResponse.NOT_SERVING}
        assert pdp.process is not None and pdp.process.poll() is None

        (policies / "workloads.cedar").write_text(good)
        eventually(
            lambda: _health(channel) == {health_pb2.HealthCheckResponse.SERVING},
            15.0,
            0.1,
            "_health(channel) == {health_pb2.HealthCheckResponse.SERVING}",
            pdp.output,
        )
        assert _ready(pdp) == 200
        response = stub.Check(
            check_request(
                principal=f"{SHOP}/frontend", certificate=pdp.peer_certificate(f"{SHOP}/frontend")
            ),
            timeout=5,
        )
        assert response.status.code == code_pb2.OK
