"""Envoy SDS (``envoy.service.secret.v3.SecretDiscoveryService``) on grpclib, bound to the caller.

The caller is identified exactly as on the Workload API (one
:class:`~agent.serving.Attestor`): on a Unix socket by its peer
credentials, pinned when it connected and checked on every call and push; on
a loopback TCP port it has exactly the selectors configured for that
listener. It gets only the SVIDs whose entries those selectors match; a
caller that matches none gets ``PERMISSION_DENIED`` (and a stream whose
caller stops matching any - the entry deleted, the agent evicted - ends so).

Secrets, by the name Envoy asks for:

- a SPIFFE ID of an SVID the caller may have (or ``default``, the first one):
  a ``tls_certificate`` with the SVID chain and key;
- the trust domain's ID (``spiffe://example.org``), ``ROOTCA`` or ``ALL``: a
  ``validation_context`` with the trust bundle.

``StreamSecrets`` follows the xDS state-of-the-world protocol: every response
has a content-derived ``version_info`` and a fresh ``nonce``; a request whose
``response_nonce`` is not the last one sent is stale and ignored; an ACK
records the version; a NACK (``error_detail`` set) is logged and counted and
the same content is not sent again - the next change is. A change of the
requested names is answered at once; a secret the caller loses is left out
of the next response. Messages above 4 MiB are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets as _secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from grpclib import GRPCError
from grpclib.const import Cardinality, Handler, Status
from grpclib.server import Server, Stream

from agent.hub import SnapshotHub
from agent.model import HeldSvid, Snapshot
from agent.serving import Attestor, Caller, UnixAttestor, recv_bounded, start_server

__all__ = [
    "SECRET_TYPE_URL",
    "SdsService",
    "SdsStats",
    "parse_sds_address",
    "secrets_for",
    "serve_sds",
]

log = logging.getLogger("meshward.agent.sds")

SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105
_SERVICE = "/envoy.service.secret.v3.SecretDiscoveryService/"
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


class SdsService:
    """SDS over the agent's snapshots, for the caller ``attestor`` identifies."""

    def __init__(
        self, hub: SnapshotHub, attestor: Attestor | None = None, first_sync_wait: float = 10.0
    ) -> None:
        self.hub = hub
        self.attestor = attestor or UnixAttestor()
        self.first_sync_wait = first_sync_wait
        self.stats = SdsStats()
        self._synced = asyncio.Event()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            _SERVICE + "StreamSecrets": Handler(
                self.stream_secrets,
                Cardinality.STREAM_STREAM,
                discovery_pb2.DiscoveryRequest,
                discovery_pb2.DiscoveryResponse,
            ),
            _SERVICE + "FetchSecrets": Handler(
                self.fetch_secrets,
                Cardinality.UNARY_UNARY,
                discovery_pb2.DiscoveryRequest,
                discovery_pb2.DiscoveryResponse,
            ),
            _SERVICE + "DeltaSecrets": Handler(
                self.delta_secrets,
                Cardinality.STREAM_STREAM,
                discovery_pb2.DeltaDiscoveryRequest,
                discovery_pb2.DeltaDiscoveryResponse,
            ),
        }

    async def _ready(self) -> None:
        """Right after start, wait (bounded) for a first whole snapshot with a bundle."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.first_sync_wait):
                version = self.hub.current.version
                while self.hub.current.bundle is None or self.hub.current.partial:
                    version = (await self.hub.wait_newer(version)).version

    def allowed(self, caller: Caller) -> Callable[[HeldSvid], bool]:
        return lambda svid: svid.entry.matches(caller.selectors)

    def check(self, stream: Stream[Any, Any], snapshot: Snapshot) -> Callable[[HeldSvid], bool]:
        """The caller's filter now; ``PERMISSION_DENIED`` if it may have no SVID at all."""
        allowed = self.allowed(self.attestor.caller(stream))
        if not any(allowed(s) for s in snapshot.svids):
            raise GRPCError(Status.PERMISSION_DENIED, "no identity issued")
        return allowed

    async def fetch_secrets(
        self, stream: Stream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]
    ) -> None:
        self.attestor.caller(stream)
        request = await recv_bounded(stream)
        if request is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "no request")
        if request.type_url not in ("", SECRET_TYPE_URL):
            raise GRPCError(Status.INVALID_ARGUMENT, "unsupported type_url")
        await self._ready()
        snapshot = self.hub.current
        allowed = self.check(stream, snapshot)
        await stream.send_message(_response(secrets_for(snapshot, request.resource_names, allowed)))

    async def delta_secrets(self, stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "use StreamSecrets (state of the world)")

    async def stream_secrets(
        self, stream: Stream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]
    ) -> None:
        self.attestor.caller(stream)
        await _SdsStream(self, stream).run()


class _SdsStream:
    """One ``StreamSecrets`` call: requests read in one task, pushes on snapshot changes."""

    def __init__(
        self,
        service: SdsService,
        stream: Stream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse],
    ) -> None:
        self.service = service
        self.stream = stream
        self.state = _StreamState()
        self.lock = asyncio.Lock()

    async def send_if_new(self, snapshot: Snapshot, force: bool) -> None:
        state, stats = self.state, self.service.stats
        async with self.lock:
            allowed = self.service.check(self.stream, snapshot)
            resources = secrets_for(snapshot, state.names, allowed)
            if not resources and not state.sent_version:
                return
            response = _response(resources)
            if not force and response.version_info == state.sent_version:
                return
            state.nonce = response.nonce
            state.sent_version = response.version_info
            stats.responses += 1
            await self.stream.send_message(response)

    async def read_requests(self) -> None:
        state, stats = self.state, self.service.stats
        while (request := await recv_bounded(self.stream)) is not None:
            if request.type_url not in ("", SECRET_TYPE_URL):
                raise GRPCError(Status.INVALID_ARGUMENT, "unsupported type_url")
            if request.response_nonce and request.response_nonce != state.nonce:
                stats.stale += 1
                continue
            names = tuple(request.resource_names)
            if request.HasField("error_detail"):
                stats.nacks += 1
                stats.nack_details.append(request.error_detail.message[:500])
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
                await self.service._ready()
                # New names: answer now, even with content already sent.
                await self.send_if_new(self.service.hub.current, force=True)

    async def run(self) -> None:
        hub = self.service.hub
        reader = asyncio.create_task(self.read_requests())
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
            await reader  # the end of the request stream, or the reader's error
        finally:
            if newer is not None:
                newer.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, GRPCError):
                await reader


def parse_sds_address(address: str) -> tuple[Path | None, str | None, int | None]:
    """``unix:/path`` → (path, None, None); ``HOST:PORT`` → (None, host, port)."""
    if address.startswith("unix:"):
        return Path(address.removeprefix("unix:")), None, None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"SDS address {address!r} is neither unix:/path nor HOST:PORT")
    return None, host, int(port)


async def serve_sds(
    service: SdsService, address: str, socket_mode: int = 0o660, group: str | None = None
) -> Server:
    """Serve SDS on ``unix:/path`` or a loopback ``HOST:PORT``; return the started server."""
    path, host, port = parse_sds_address(address)
    return await start_server(
        [service], service.attestor, path=path, host=host, port=port, mode=socket_mode, group=group
    )
