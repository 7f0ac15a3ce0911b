"""An SDS client built from Envoy's own protos (xds-protos) against the agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.rpc import status_pb2

from agent.sds import SECRET_TYPE_URL, SdsService, serve_sds
from agent.serving import FixedAttestor
from tests.integration.agent.conftest import RunningAgent
from tests.support.net import free_port

WEB = "spiffe://example.org/web"
TD = "spiffe://example.org"


def request(names: list[str], version: str = "", nonce: str = "", error: str | None = None):
    req = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id="sidecar~10.0.0.1~web~default", cluster="web"),
        resource_names=names,
        type_url=SECRET_TYPE_URL,
        version_info=version,
        response_nonce=nonce,
    )
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def unpack(response: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    out = {}
    for item in response.resources:
        secret = secret_pb2.Secret()
        assert item.Unpack(secret)
        out[secret.name] = secret
    return out


def leaf_serial(secret: secret_pb2.Secret) -> int:
    chain = x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)
    key = serialization.load_pem_private_key(
        secret.tls_certificate.private_key.inline_bytes, password=None
    )
    assert key.public_key() == chain[0].public_key()
    return chain[0].serial_number


class Client:
    """A bidi SDS stream driven step by step, as Envoy drives it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        self.call = stub.StreamSecrets(self._requests())
        self._pending: asyncio.Future[discovery_pb2.DiscoveryResponse] | None = None

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self.call.cancel()

    async def send(self, req: discovery_pb2.DiscoveryRequest) -> None:
        await self.queue.put(req)

    def _read(self) -> asyncio.Future[discovery_pb2.DiscoveryResponse]:
        # One read in flight at a time; a read that timed out is picked up later.
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.call.read())
        return self._pending

    async def recv(self, timeout: float = 10) -> discovery_pb2.DiscoveryResponse:
        response = await asyncio.wait_for(asyncio.shield(self._read()), timeout)
        self._pending = None
        return response

    async def expect_nothing(self, wait: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._read()), wait)


@pytest.fixture
async def sds(running_agent: RunningAgent, short_tmp):
    service = SdsService(running_agent.agent.hub)
    address = f"unix:{short_tmp / 'sds.sock'}"
    server = await serve_sds(service, address)
    channel = grpc.aio.insecure_channel(address)
    yield service, channel
    await channel.close()
    server.close()
    await server.wait_closed()


async def test_stream_ack_rotation_and_nack(running_agent: RunningAgent, sds) -> None:
    service, channel = sds
    client = Client(channel)
    names = [WEB, TD]
    await client.send(request(names))
    first = await client.recv()
    assert first.type_url == SECRET_TYPE_URL and first.nonce and first.version_info
    secrets = unpack(first)
    assert set(secrets) == {WEB, TD}
    held = running_agent.agent.hub.current.svid_by_id(WEB)
    assert held is not None and leaf_serial(secrets[WEB]) == held.serial
    bundle = x509.load_pem_x509_certificates(secrets[TD].validation_context.trusted_ca.inline_bytes)
    assert bundle == [running_agent.authority.root]

    # ACK: nothing new is sent.
    await client.send(request(names, first.version_info, first.nonce))
    await asyncio.sleep(0.2)
    assert service.stats.acks == 1

    # Rotation: a new version with the new certificate, on the same stream.
    running_agent.agent.rotate_now()
    second = await client.recv()
    assert second.version_info != first.version_info and second.nonce != first.nonce
    assert leaf_serial(unpack(second)[WEB]) != leaf_serial(secrets[WEB])
    await client.send(request(names, second.version_info, second.nonce))

    # A request with an outdated nonce is stale and ignored.
    await client.send(request(names, first.version_info, first.nonce))
    await client.expect_nothing()
    assert service.stats.stale == 1

    # NACK the next push: recorded, and the rejected content is not pushed again.
    running_agent.agent.rotate_now()
    third = await client.recv()
    await client.send(request(names, second.version_info, third.nonce, error="bad key"))
    await client.expect_nothing()
    assert service.stats.nacks == 1 and service.stats.nack_details == ["bad key"]
    # ... but the next change is.
    running_agent.agent.rotate_now()
    fourth = await client.recv()
    assert fourth.version_info not in (second.version_info, third.version_info)
    client.close()


async def test_changing_names_is_answered_at_once(running_agent: RunningAgent, sds) -> None:
    _, channel = sds
    client = Client(channel)
    await client.send(request([TD]))
    first = await client.recv()
    assert set(unpack(first)) == {TD}
    await client.send(request([TD, "default"], first.version_info, first.nonce))
    second = await client.recv()
    secrets = unpack(second)
    assert set(secrets) == {TD, "default"}
    assert secrets["default"].HasField("tls_certificate")
    client.close()


async def test_fetch_secrets_and_unknown_names(running_agent: RunningAgent, sds) -> None:
    _, channel = sds
    stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
    response = await stub.FetchSecrets(request([WEB, "ROOTCA", "spiffe://example.org/db"]))
    # The db SVID is held too, but for uid 4242: this caller (uid 0) does not get it.
    assert running_agent.agent.hub.current.svid_by_id("spiffe://example.org/db") is not None
    assert set(unpack(response)) == {WEB, "ROOTCA"}
    response = await stub.FetchSecrets(request(["spiffe://example.org/nope"]))
    assert list(response.resources) == []


async def test_sds_on_a_loopback_port_serves_its_selectors(running_agent: RunningAgent) -> None:
    address = f"127.0.0.1:{free_port()}"
    service = SdsService(running_agent.agent.hub, FixedAttestor({"unix:uid:4242"}))
    server = await serve_sds(service, address)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            response = await stub.FetchSecrets(request([WEB, "spiffe://example.org/db", TD]))
        # Exactly what unix:uid:4242 matches, whoever connects.
        assert set(unpack(response)) == {"spiffe://example.org/db", TD}
    finally:
        server.close()
        await server.wait_closed()


async def test_sds_on_tcp_refuses_a_non_loopback_address(running_agent: RunningAgent) -> None:
    service = SdsService(running_agent.agent.hub, FixedAttestor({"unix:uid:0"}))
    with pytest.raises(ValueError, match="loopback"):
        await serve_sds(service, f"0.0.0.0:{free_port()}")
