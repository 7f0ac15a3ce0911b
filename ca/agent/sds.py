"""Envoy SDS (``envoy.service.secret.v3.SecretDiscoveryService``) on grpc.aio.

Secrets, by the name Envoy asks for:

- a SPIFFE ID the agent holds (or ``default``, the first one): a
  ``tls_certificate`` with the SVID chain and key;
- the trust domain's ID (``spiffe://example.org``), ``ROOTCA`` or ``ALL``: a
  ``validation_context`` with the trust bundle.

``StreamSecrets`` follows the xDS state-of-the-world protocol: every response
has a content-derived ``version_info`` and a fresh ``nonce``; a request whose
``response_nonce`` is not the last one sent is stale and ignored; an ACK
records the version; a NACK (``error_detail`` set) is logged and counted and
the same content is not sent again - the next change is. A change of the
requested names is answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets as _secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from ca.agent.hub import SnapshotHub
from ca.agent.model import HeldSvid, Snapshot

__all__ = ["SECRET_TYPE_URL", "SdsService", "SdsStats", "secrets_for", "serve_sds"]

log = logging.getLogger("meshward.agent.sds")

SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105
DEFAULT_SVID = "default"
BUNDLE_ALIASES = ("ROOTCA", "ALL")


def _tls_secret(name: str, svid: HeldSvid) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain={"inline_bytes": svid.chain_pem},
            private_key={"inline_bytes": svid.key_pem},
        ),
    )


def secrets_for(
    snapshot: Snapshot, names: Sequence[str], allowed: Callable[[HeldSvid], bool]
) -> list[secret_pb2.Secret]:
    """The secrets of ``names`` that exist now (unknown names are left out)."""
    svids = [s for s in snapshot.svids if allowed(s)]
    bundle = snapshot.bundle
    out = []
    for name in dict.fromkeys(names):
        if bundle is not None and name in (str(bundle.trust_domain.id), *BUNDLE_ALIASES):
            out.append(
                secret_pb2.Secret(
                    name=name,
                    validation_context=common_pb2.CertificateValidationContext(
                        trusted_ca={"inline_bytes": bundle.x509_pem}
                    ),
                )
            )
        elif name == DEFAULT_SVID and svids:
            out.append(_tls_secret(name, svids[0]))
        else:
            svid = next((s for s in svids if str(s.spiffe_id) == name), None)
            if svid is not None:
                out.append(_tls_secret(name, svid))
    return out


def _response(resources: list[secret_pb2.Secret]) -> discovery_pb2.DiscoveryResponse:
    response = discovery_pb2.DiscoveryResponse(
        type_url=SECRET_TYPE_URL, nonce=_secrets.token_hex(8)
    )
    digest = hashlib.sha256()
    for secret in resources:
        item = response.resources.add()
        item.Pack(secret, deterministic=True)
        digest.update(item.value)
    response.version_info = digest.hexdigest()[:16]
    return response


@dataclass
class SdsStats:
    """Counters for tests and metrics."""

    responses: int = 0
    acks: int = 0
    nacks: int = 0
    stale: int = 0
    nack_details: list[str] = field(default_factory=list)


@dataclass
class _StreamState:
    names: tuple[str, ...] = ()
    nonce: str = ""
    sent_version: str = ""
    acked_version: str = ""
    subscribed: bool = False


class SdsService(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """SDS over the agent's snapshots; ``allowed`` limits which SVIDs Envoy may get."""

    def __init__(self, hub: SnapshotHub, allowed: Callable[[HeldSvid], bool] | None = None) -> None:
        self.hub = hub
        self.allowed = allowed or (lambda _svid: True)
        self.stats = SdsStats()

    async def FetchSecrets(
        self, request: discovery_pb2.DiscoveryRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.DiscoveryResponse:
        if request.type_url not in ("", SECRET_TYPE_URL):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported type_url")
        return _response(secrets_for(self.hub.current, request.resource_names, self.allowed))

    async def DeltaSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "use StreamSecrets (state of the world)")

    async def StreamSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await _SdsStream(self, context).run(request_iterator)


class _SdsStream:
    """One ``StreamSecrets`` call: requests read in one task, pushes on snapshot changes."""

    def __init__(self, service: SdsService, context: grpc.aio.ServicerContext) -> None:
        self.service = service
        self.context = context
        self.state = _StreamState()
        self.lock = asyncio.Lock()

    async def send_if_new(self, snapshot: Snapshot, force: bool) -> None:
        state, stats = self.state, self.service.stats
        async with self.lock:
            resources = secrets_for(snapshot, state.names, self.service.allowed)
            if not resources:
                return
            response = _response(resources)
            if not force and response.version_info == state.sent_version:
                return
            state.nonce = response.nonce
            state.sent_version = response.version_info
            stats.responses += 1
            await self.context.write(response)

    async def read_requests(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest]
    ) -> None:
        state, stats = self.state, self.service.stats
        async for request in request_iterator:
            if request.type_url not in ("", SECRET_TYPE_URL):
                await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported type_url")
            if request.response_nonce and request.response_nonce != state.nonce:
                stats.stale += 1
                continue
            names = tuple(request.resource_names)
            if request.HasField("error_detail"):
                stats.nacks += 1
                stats.nack_details.append(request.error_detail.message)
                log.warning(
                    "Envoy rejected secrets",
                    extra={
                        "fields": {
                            "version": state.sent_version,
                            "detail": request.error_detail.message[:500],
                        }
                    },
                )
            elif request.response_nonce:
                stats.acks += 1
                state.acked_version = request.version_info
            if names != state.names or not state.subscribed:
                state.names = names
                state.subscribed = True
                # New names: answer now, even with content already sent.
                await self.send_if_new(self.service.hub.current, force=True)

    async def run(self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest]) -> None:
        hub = self.service.hub
        reader = asyncio.create_task(self.read_requests(request_iterator))
        newer: asyncio.Future[Snapshot] | None = None
        try:
            version = hub.current.version
            while True:
                newer = asyncio.ensure_future(hub.wait_newer(version))
                await asyncio.wait({newer, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    break
                snapshot = newer.result()
                version = snapshot.version
                if self.state.subscribed:
                    await self.send_if_new(snapshot, force=False)
            await reader
        finally:
            if newer is not None:
                newer.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader


async def serve_sds(service: SdsService, address: str, socket_mode: int = 0o660) -> grpc.aio.Server:
    """Serve SDS on ``unix:/path`` or ``HOST:PORT`` (loopback) and return the started server."""
    server = grpc.aio.server()
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(service, server)
    path: Path | None = None
    if address.startswith("unix:"):
        path = Path(address.removeprefix("unix:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
    bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    if path is not None:
        path.chmod(socket_mode)
    return server
