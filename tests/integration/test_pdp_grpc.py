"""A real gRPC client (Envoy's protos from xds-protos) against ``meshward pdp serve``."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.certs import url_encoded_pem
from tests.support.cli import REPO, meshward
from tests.support.envoy import SHOP, check_request, denied_body_json, upstream_headers
from tests.support.net import free_port
from tests.support.pdp import ISSUER, PdpProcess, pdp_process
from tests.support.tokens import SigningKey

FRONTEND = f"{SHOP}/frontend"
ORDERS = f"{SHOP}/orders"
CATALOG = f"{SHOP}/catalog"


class _Peer(TypedDict, total=False):
    certificate: str


# The frontend's verified certificate, as Envoy sends it (filled by the pdp fixture).
PEER: _Peer = {}


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdpProcess]:
    workdir: Path = tmp_path_factory.mktemp("pdp-grpc")
    with pdp_process(workdir) as proc:
        PEER["certificate"] = proc.peer_certificate(FRONTEND)
        yield proc


@pytest.fixture(scope="module")
def channel(pdp: PdpProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(pdp.grpc_addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> external_auth_pb2_grpc.AuthorizationStub:
    return external_auth_pb2_grpc.AuthorizationStub(channel)


def _now() -> int:
    return int(time.time())


def assert_denied(response: pb.CheckResponse, code: int, http_status: int) -> None:
    assert response.status.code == code
    assert response.denied_response.status.code == http_status
    body = denied_body_json(response)
    assert set(body) == {"error", "decision_id"}
    assert len(body["decision_id"]) == 32
    headers = {h.header.key: h.header.value for h in response.denied_response.headers}
    assert headers["x-meshward-decision-id"] == body["decision_id"]
    if http_status == 401:
        assert headers["www-authenticate"].startswith("Bearer")


def test_health_serving_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "envoy.service.auth.v3.Authorization"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(
        reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert "envoy.service.auth.v3.Authorization" in names


def test_mtls_principal_allowed(stub) -> None:
    response = stub.Check(check_request(principal=FRONTEND, **PEER), timeout=5)
    assert response.status.code == code_pb2.OK
    headers = upstream_headers(response)
    assert headers["x-meshward-principal"] == f'Workload::"{FRONTEND}"'
    assert len(headers["x-meshward-decision-id"]) == 32
    assert list(response.ok_response.headers_to_remove) == ["authorization"]


def test_forged_principal_header_is_overwritten(stub) -> None:
    request = check_request(
        principal=FRONTEND, **PEER, headers={"x-meshward-principal": 'User::"root"'}
    )
    response = stub.Check(request, timeout=5)
    assert upstream_headers(response)["x-meshward-principal"] == f'Workload::"{FRONTEND}"'


def test_certificate_chain_verified(stub, pdp: PdpProcess) -> None:
    # The server runs on the real clock: issue a leaf valid now, and one long expired.
    now = dt.datetime.now(dt.UTC)
    expired = pdp.pki.leaf(
        path="/ns/shop/sa/frontend",
        not_before=now - dt.timedelta(hours=2),
        not_after=now - dt.timedelta(hours=1),
    )
    fresh = pdp.pki.leaf(
        path="/ns/shop/sa/frontend",
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(hours=1),
    )
    response = stub.Check(
        check_request(principal=FRONTEND, certificate=url_encoded_pem(*pdp.pki.chain(fresh))),
        timeout=5,
    )
    assert response.status.code == code_pb2.OK
    # an expired leaf, and a leaf naming another workload than the principal
    for certificate in (
        url_encoded_pem(*pdp.pki.chain(expired)),
        url_encoded_pem(*pdp.pki.chain(pdp.pki.leaf(path="/x"))),
    ):
        response = stub.Check(check_request(principal=FRONTEND, certificate=certificate), timeout=5)
        assert_denied(response, code_pb2.UNAUTHENTICATED, 401)


def test_denied(stub) -> None:
    response = stub.Check(check_request("DELETE", principal=FRONTEND, **PEER), timeout=5)
    assert_denied(response, code_pb2.PERMISSION_DENIED, 403)
    assert denied_body_json(response)["error"] == "forbidden"


def test_no_credentials_is_401(stub) -> None:
    response = stub.Check(check_request(), timeout=5)
    assert_denied(response, code_pb2.UNAUTHENTICATED, 401)


def test_jwt_svid_allowed(stub, pdp: PdpProcess) -> None:
    token = pdp.svid_key.sign({"sub": ORDERS, "aud": CATALOG, "exp": _now() + 300})
    response = stub.Check(check_request(headers={"authorization": f"Bearer {token}"}), timeout=5)
    assert response.status.code == code_pb2.OK
    assert upstream_headers(response)["x-meshward-principal"] == f'Workload::"{ORDERS}"'
    # The token goes no further than the PDP: the upstream never sees it (default).
    assert list(response.ok_response.headers_to_remove) == ["authorization"]


def test_jwt_svid_replayed_to_another_destination_is_401(stub, pdp: PdpProcess) -> None:
    # The catalog got the orders service's token and presents it to the payments service.
    token = pdp.svid_key.sign({"sub": ORDERS, "aud": CATALOG, "exp": _now() + 300})
    replay = check_request(
        "POST",
        "/v1/charges",
        headers={"authorization": f"Bearer {token}"},
        destination=f"{SHOP}/payments",
    )
    assert_denied(stub.Check(replay, timeout=5), code_pb2.UNAUTHENTICATED, 401)
    for_payments = pdp.svid_key.sign(
        {"sub": ORDERS, "aud": f"{SHOP}/payments", "exp": _now() + 300}
    )
    charge = check_request(
        "POST",
        "/v1/charges",
        headers={"authorization": f"Bearer {for_payments}"},
        destination=f"{SHOP}/payments",
    )
    assert stub.Check(charge, timeout=5).status.code == code_pb2.OK


def test_bare_principal_without_certificate_is_401(stub) -> None:
    response = stub.Check(check_request(principal=FRONTEND), timeout=5)
    assert_denied(response, code_pb2.UNAUTHENTICATED, 401)


def test_user_through_frontend(stub, pdp: PdpProcess) -> None:
    token = pdp.idp_key.sign(
        {"iss": ISSUER, "sub": "carol", "aud": "shop", "exp": _now() + 300, "groups": ["customers"]}
    )
    headers = {"authorization": f"Bearer {token}"}
    via_frontend = stub.Check(check_request(headers=headers, principal=FRONTEND, **PEER), timeout=5)
    assert via_frontend.status.code == code_pb2.OK
    assert upstream_headers(via_frontend)["x-meshward-principal"] == f'User::"{ISSUER}|carol"'
    direct = stub.Check(check_request(headers=headers), timeout=5)
    assert_denied(direct, code_pb2.PERMISSION_DENIED, 403)


def _attack_tokens(pdp: PdpProcess) -> dict[str, str]:
    now = _now()
    good = {"sub": ORDERS, "aud": CATALOG, "exp": now + 300}
    return {
        "expired": pdp.svid_key.sign({**good, "exp": now - 120}),
        "wrong-audience": pdp.svid_key.sign({**good, "aud": "other"}),
        "mesh-wide-audience": pdp.svid_key.sign({**good, "aud": "meshward"}),
        "unknown-kid": SigningKey("svid-key-2").sign(good),
        "other-trust-domain": pdp.svid_key.sign({**good, "sub": "spiffe://evil.example/x"}),
        "garbage": "abc.def.ghi",
        "oversized": pdp.svid_key.sign({**good, "pad": "x" * 9000}),
        "wrong-issuer": pdp.idp_key.sign(
            {"iss": "https://evil.example", "sub": "carol", "aud": "shop", "exp": now + 300}
        ),
    }


def test_jwt_attacks_are_401(stub, pdp: PdpProcess) -> None:
    for name, token in _attack_tokens(pdp).items():
        response = stub.Check(
            check_request(headers={"authorization": f"Bearer {token}"}, principal=FRONTEND, **PEER),
            timeout=5,
        )
        assert response.status.code == code_pb2.UNAUTHENTICATED, name
        assert response.denied_response.status.code == 401, name


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(pb.CheckRequest(), id="empty"),
        pytest.param(check_request(method=""), id="no-method"),
        pytest.param(check_request("BREW", principal=FRONTEND), id="unknown-method"),
        pytest.param(check_request("GE T", principal=FRONTEND), id="method-with-space"),
        pytest.param(check_request("G" * 100, principal=FRONTEND), id="long-method"),
        pytest.param(check_request(principal="not a spiffe id"), id="bad-principal"),
        pytest.param(check_request(principal=FRONTEND, certificate="%%%garbage"), id="bad-cert"),
        pytest.param(
            check_request(principal=FRONTEND, raw_headers={"x-bin": b"\xff\xfe\xfd"}),
            id="non-utf8-header",
        ),
        pytest.param(
            check_request(principal="spiffe://evil.example/ns/shop/sa/frontend"),
            id="foreign-trust-domain",
        ),
    ],
)
def test_malformed_requests_denied(stub, request_: pb.CheckRequest) -> None:
    response = stub.Check(request_, timeout=5)
    assert response.status.code in (code_pb2.PERMISSION_DENIED, code_pb2.UNAUTHENTICATED)
    assert response.denied_response.status.code in (401, 403)
    assert "decision_id" in json.loads(response.denied_response.body)


def test_undecodable_protobuf_denied(channel: grpc.Channel) -> None:
    marker = "Z" * 8
    data = check_request(principal=FRONTEND, **PEER, headers={"x-a": marker}).SerializeToString()
    broken = data.replace(marker.encode(), b"\xff" * 8)  # invalid UTF-8 in a string field
    call = channel.unary_unary(
        "/envoy.service.auth.v3.Authorization/Check",
        request_serializer=lambda b: b,
        response_deserializer=pb.CheckResponse.FromString,
    )
    for payload in (broken, b"\x0a\xff\xff\xff\xff\x0f"):
        response = call(payload, timeout=5)
        assert response.status.code == code_pb2.PERMISSION_DENIED
        assert response.denied_response.status.code == 403


def test_huge_headers(stub) -> None:
    big = {f"x-big-{i}": "v" * 1024 for i in range(80)}  # 80 KiB of headers
    response = stub.Check(check_request(principal=FRONTEND, **PEER, headers=big), timeout=10)
    assert response.status.code == code_pb2.OK
    one = stub.Check(
        check_request(principal=FRONTEND, **PEER, headers={"x": "y" * 70000}), timeout=10
    )
    assert one.status.code == code_pb2.OK


def test_unknown_method_name_is_unimplemented(channel: grpc.Channel) -> None:
    call = channel.unary_unary(
        "/envoy.service.auth.v3.Authorization/Nope",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_concurrent_calls(stub) -> None:
    def one(i: int) -> tuple[int, int]:
        method = "GET" if i % 2 == 0 else "DELETE"
        response = stub.Check(check_request(method, principal=FRONTEND, **PEER), timeout=10)
        return i, response.status.code

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(200)))
    for i, code in results:
        assert code == (code_pb2.OK if i % 2 == 0 else code_pb2.PERMISSION_DENIED)


def test_decisions_counted_in_metrics(pdp: PdpProcess, stub) -> None:
    stub.Check(check_request(principal=FRONTEND, **PEER), timeout=5)
    text = httpx.get(f"{pdp.http_url}/metrics").text
    assert 'meshward_pdp_decisions_total{adapter="envoy_grpc",result="allow"}' in text
    assert "meshward_pdp_decision_seconds_bucket" in text


def test_single_process_refuses_a_taken_port(pdp: PdpProcess) -> None:
    # Without --workers, a port already in use is an error, never shared traffic.
    out = meshward(
        "pdp", "serve", "--policies", str(REPO / "policies"),
        "--grpc-addr", pdp.grpc_addr, "--http-addr", f"127.0.0.1:{free_port()}",
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
