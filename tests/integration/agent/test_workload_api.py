"""py-spiffe's own clients against the agent's Workload API socket."""

from __future__ import annotations

import asyncio
import struct
import threading

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from spiffe import JwtSource, WorkloadApiClient, X509Source
from spiffe._proto import workload_pb2, workload_pb2_grpc
from spiffe.spiffe_id.spiffe_id import SpiffeId as PySpiffeId
from spiffe.spiffe_id.spiffe_id import TrustDomain as PyTrustDomain
from spiffe.svid.jwt_svid import JwtSvid
from spiffe.workloadapi.errors import FetchJwtSvidError, FetchX509SvidError

from tests.integration.agent.conftest import RunningAgent, entry
from tests.support.wait import eventually_async


async def test_fetch_x509_context_and_bundle_verify(running_agent: RunningAgent) -> None:
    def fetch() -> tuple[str, int, int]:
        with WorkloadApiClient(running_agent.endpoint) as client:
            ctx = client.fetch_x509_context()
            svid = ctx.default_svid
            bundle = ctx.x509_bundle_set.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
            assert bundle is not None
            (root,) = bundle.x509_authorities
            leaf, signing_ca = svid.cert_chain  # the chain up to the bundle's root
            leaf.verify_directly_issued_by(signing_ca)
            signing_ca.verify_directly_issued_by(root)
            # The private key handed out is the one the certificate certifies.
            assert svid.private_key.public_key() == svid.leaf.public_key()
            return str(svid.spiffe_id), len(ctx.x509_svids), svid.leaf.serial_number

    spiffe_id, count, serial = await asyncio.to_thread(fetch)
    assert spiffe_id == "spiffe://example.org/web"
    # uid 0 matches only the "web" entry, never the "db" one (uid 4242).
    assert count == 1
    held = running_agent.agent.hub.current.svid_by_id("spiffe://example.org/web")
    assert held is not None and held.serial == serial


async def test_jwt_svid_fetched_and_validated(running_agent: RunningAgent) -> None:
    def fetch_and_validate() -> tuple[str, str, set[str]]:
        with WorkloadApiClient(running_agent.endpoint) as client:
            token = client.fetch_jwt_svid({"orders"})
            bundles = client.fetch_jwt_bundles()
            validated = client.validate_jwt_svid(token.token, "orders")
            # Validate locally too, with py-spiffe's own validator and the agent's bundle.
            bundle = bundles.get_bundle_for_trust_domain(PyTrustDomain("example.org"))
            assert bundle is not None
            local = JwtSvid.parse_and_validate(token.token, bundle, {"orders"})
            return str(validated.spiffe_id), str(local.spiffe_id), set(local.audience)

    server_side, local, audience = await asyncio.to_thread(fetch_and_validate)
    assert server_side == local == "spiffe://example.org/web"
    assert audience == {"orders"}


async def test_validate_rejects_wrong_audience(running_agent: RunningAgent) -> None:
    def run() -> grpc.StatusCode:
        with WorkloadApiClient(running_agent.endpoint) as client:
            token = client.fetch_jwt_svid({"orders"})
        with grpc.insecure_channel(running_agent.endpoint) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.ValidateJWTSVID(
                    workload_pb2.ValidateJWTSVIDRequest(audience="billing", svid=token.token),
                    metadata=[("workload.spiffe.io", "true")],
                )
            return err.value.code()

    assert await asyncio.to_thread(run) is grpc.StatusCode.INVALID_ARGUMENT


async def test_x509_source_sees_rotation_without_reconnecting(running_agent: RunningAgent) -> None:
    updates: list[int] = []
    seen = threading.Event()

    def updated() -> None:
        updates.append(1)
        seen.set()

    def start() -> X509Source:
        source = X509Source(socket_path=running_agent.endpoint, timeout_in_seconds=10)
        source.subscribe_for_updates(updated)
        return source

    source = await asyncio.to_thread(start)
    try:
        first = source.get_x509_context().default_svid.leaf.serial_number
        opened = running_agent.api.x509_streams_opened
        running_agent.agent.rotate_now()
        await eventually_async(
            lambda: source.get_x509_context().default_svid.leaf.serial_number != first,
            message="the rotated SVID",
        )
        assert str(source.get_x509_context().default_svid.spiffe_id) == "spiffe://example.org/web"
        assert updates  # the rotation was pushed to the subscriber
        assert running_agent.api.x509_streams_opened == opened  # on the same stream
    finally:
        await asyncio.to_thread(source.close)


async def test_jwt_source_validates(running_agent: RunningAgent) -> None:
    def run() -> str:
        source = JwtSource(socket_path=running_agent.endpoint, timeout_in_seconds=10)
        try:
            svid = source.fetch_svid({"orders"}, PySpiffeId("spiffe://example.org/web"))
            bundle = source.get_bundle_for_trust_domain(PyTrustDomain("example.org"))
            assert bundle is not None
            return str(JwtSvid.parse_and_validate(svid.token, bundle, {"orders"}).spiffe_id)
        finally:
            source.close()

    assert await asyncio.to_thread(run) == "spiffe://example.org/web"


async def test_uid_matching_no_entry_is_denied(running_agent: RunningAgent) -> None:
    running_agent.authority.entries = [
        entry("db", "spiffe://example.org/db", "unix:uid:4242"),
    ]
    running_agent.agent.wake()
    await eventually_async(
        lambda: not running_agent.agent.hub.current.svids_for(frozenset({"unix:uid:0"})),
        message="uid 0's SVIDs withdrawn",
    )

    def run() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        with grpc.insecure_channel(running_agent.endpoint) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            md = [("workload.spiffe.io", "true")]
            with pytest.raises(grpc.RpcError) as x509_err:
                next(iter(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=md)))
            with pytest.raises(grpc.RpcError) as jwt_err:
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["a"]), metadata=md)
            return x509_err.value.code(), jwt_err.value.code()

    assert await asyncio.to_thread(run) == (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.PERMISSION_DENIED,
    )

    # py-spiffe reports the same refusal as its own error type.
    def via_client() -> None:
        with WorkloadApiClient(running_agent.endpoint) as client:
            with pytest.raises(FetchX509SvidError):
                client.fetch_x509_context()
            with pytest.raises(FetchJwtSvidError):
                client.fetch_jwt_svid({"a"})

    await asyncio.to_thread(via_client)


@pytest.mark.parametrize("header", [None, "false", "TRUE"])
async def test_missing_security_header_rejected(
    running_agent: RunningAgent, header: str | None
) -> None:
    def run() -> grpc.StatusCode:
        md = [] if header is None else [("workload.spiffe.io", header)]
        with grpc.insecure_channel(running_agent.endpoint) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                next(iter(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=md)))
            return err.value.code()

    assert await asyncio.to_thread(run) is grpc.StatusCode.INVALID_ARGUMENT


async def test_bundle_streams(running_agent: RunningAgent) -> None:
    def fetch() -> tuple[set[bytes], set[str]]:
        with WorkloadApiClient(running_agent.endpoint) as client:
            x509_set = client.fetch_x509_bundles()
            jwt_set = client.fetch_jwt_bundles()
        td = PyTrustDomain("example.org")
        x509_bundle = x509_set.get_bundle_for_trust_domain(td)
        jwt_bundle = jwt_set.get_bundle_for_trust_domain(td)
        assert x509_bundle is not None and jwt_bundle is not None
        ders = {c.public_bytes(serialization.Encoding.DER) for c in x509_bundle.x509_authorities}
        return ders, set(jwt_bundle.jwt_authorities)

    ders, kids = await asyncio.to_thread(fetch)
    assert ders == {running_agent.authority.root.public_bytes(serialization.Encoding.DER)}
    assert kids == {running_agent.authority.kid}


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        (struct.pack(">?I", True, 3) + b"abc", Status.UNIMPLEMENTED),  # compressed
        (struct.pack(">?I", False, 100) + b"abc", Status.INVALID_ARGUMENT),  # truncated
        (struct.pack(">?I", False, 3) + b"\xff\xff\xff", Status.INVALID_ARGUMENT),  # garbage
        (b"\x00\x00", Status.INVALID_ARGUMENT),  # a broken length prefix
        (struct.pack(">?I", False, 3), Status.INVALID_ARGUMENT),  # a prefix and no body
    ],
)
async def test_malformed_frames_are_refused(
    running_agent: RunningAgent, frame: bytes, status: Status
) -> None:
    async with Channel(path=str(running_agent.socket)) as channel:
        method = channel.request(
            "/SpiffeWorkloadAPI/FetchJWTSVID",
            Cardinality.UNARY_UNARY,
            workload_pb2.JWTSVIDRequest,
            workload_pb2.JWTSVIDResponse,
            metadata={"workload.spiffe.io": "true"},
            timeout=10,
        )
        with pytest.raises(GRPCError) as caught:
            async with method as stream:
                await stream.send_request()
                await stream._stream.send_data(frame, end_stream=True)  # raw gRPC framing
                await stream.recv_message()
    assert caught.value.status == status


async def test_too_many_audiences_are_refused_before_the_ca(running_agent: RunningAgent) -> None:
    calls = running_agent.authority.calls
    async with grpc.aio.insecure_channel(running_agent.endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.FetchJWTSVID(
                workload_pb2.JWTSVIDRequest(audience=[f"a{i}" for i in range(17)]),
                metadata=(("workload.spiffe.io", "true"),),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ok = await stub.FetchJWTSVID(
            workload_pb2.JWTSVIDRequest(audience=[f"a{i}" for i in range(16)]),
            metadata=(("workload.spiffe.io", "true"),),
        )
    assert ok.svids
    assert running_agent.authority.calls == calls + 1  # the 16-audience request only
