"""The SPIFFE Workload API on a Unix socket (grpclib), with the proto py-spiffe ships.

Every call must carry the ``workload.spiffe.io: true`` metadata (else
``InvalidArgument``). The caller is identified by the :class:`~agent.serving.Attestor`
(the peer pinned when it connected, checked again on every call and before
every push) and gets only the SVIDs whose entries it matches; a caller
matching none gets ``PermissionDenied``. Streams send the full state at once
and again on every change that concerns the caller; a stream whose caller no
longer matches any entry (the entry was deleted, the agent evicted) ends with
``PermissionDenied``. Messages above 4 MiB are refused (``ResourceExhausted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grpclib import GRPCError
from grpclib.const import Cardinality, Handler, Status
from grpclib.server import Server, Stream
from spiffe._proto import workload_pb2 as pb

from agent.errors import CaRejected, CaRequestFailed, RateLimited
from agent.jwt_validate import InvalidJwtSvid, validate_jwt_svid
from agent.model import Bundle, HeldSvid, Snapshot
from agent.node import NodeAgent
from agent.serving import Attestor, Caller, UnixAttestor, recv_bounded, start_server
from meshward.jwt_svid import requested_audience

__all__ = ["SECURITY_HEADER", "WorkloadApi", "serve_workload_api", "status_for"]

log = logging.getLogger("meshward.agent.workload_api")

SECURITY_HEADER = "workload.spiffe.io"
_SERVICE = "/SpiffeWorkloadAPI/"


def _x509_response(svids: tuple[HeldSvid, ...], snapshot: Snapshot) -> pb.X509SVIDResponse:
    bundle = snapshot.bundle.x509_der if snapshot.bundle else b""
    return pb.X509SVIDResponse(
        svids=[
            pb.X509SVID(
                spiffe_id=str(s.spiffe_id),
                x509_svid=s.chain_der,
                x509_svid_key=s.key_der,
                bundle=bundle,
                hint=s.entry.hint,
            )
            for s in svids
        ]
    )


class WorkloadApi:
    """The ``SpiffeWorkloadAPI`` service; ``attestor`` says who calls (:mod:`agent.serving`)."""

    def __init__(
        self,
        agent: NodeAgent,
        attestor: Attestor | None = None,
        first_sync_wait: float = 10.0,
    ) -> None:
        self.agent = agent
        self.attestor = attestor or UnixAttestor()
        self.first_sync_wait = first_sync_wait
        self.x509_streams_opened = 0  # FetchX509SVID streams accepted so far

    def __mapping__(self) -> dict[str, Handler]:
        return {
            _SERVICE + "FetchX509SVID": Handler(
                self.fetch_x509_svid,
                Cardinality.UNARY_STREAM,
                pb.X509SVIDRequest,
                pb.X509SVIDResponse,
            ),
            _SERVICE + "FetchX509Bundles": Handler(
                self.fetch_x509_bundles,
                Cardinality.UNARY_STREAM,
                pb.X509BundlesRequest,
                pb.X509BundlesResponse,
            ),
            _SERVICE + "FetchJWTSVID": Handler(
                self.fetch_jwt_svid, Cardinality.UNARY_UNARY, pb.JWTSVIDRequest, pb.JWTSVIDResponse
            ),
            _SERVICE + "FetchJWTBundles": Handler(
                self.fetch_jwt_bundles,
                Cardinality.UNARY_STREAM,
                pb.JWTBundlesRequest,
                pb.JWTBundlesResponse,
            ),
            _SERVICE + "ValidateJWTSVID": Handler(
                self.validate_jwt_svid,
                Cardinality.UNARY_UNARY,
                pb.ValidateJWTSVIDRequest,
                pb.ValidateJWTSVIDResponse,
            ),
        }

    # -- who is calling --------------------------------------------------------------

    async def _ready(self) -> None:
        """Right after start, wait (bounded) for the first sync before judging a caller."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.agent.wait_synced(), self.first_sync_wait)

    def _caller(self, stream: Stream[Any, Any]) -> Caller:
        values = stream.metadata.getall(SECURITY_HEADER, []) if stream.metadata else []
        if values != ["true"]:
            raise GRPCError(Status.INVALID_ARGUMENT, "security header missing from request")
        return self.attestor.caller(stream)

    @staticmethod
    def _denied() -> GRPCError:
        return GRPCError(Status.PERMISSION_DENIED, "no identity issued")

    # -- X.509 -------------------------------------------------------------------------

    async def fetch_x509_svid(
        self, stream: Stream[pb.X509SVIDRequest, pb.X509SVIDResponse]
    ) -> None:
        self._caller(stream)
        await recv_bounded(stream)
        await self._ready()
        self.x509_streams_opened += 1
        sent: tuple[object, ...] | None = None
        async for snapshot in self.agent.hub.watch():
            svids = snapshot.svids_for(self.attestor.caller(stream).selectors)
            if not svids:
                raise self._denied()
            bundle = snapshot.bundle.x509_der if snapshot.bundle else b""
            state = (tuple((str(s.spiffe_id), s.serial) for s in svids), bundle)
            if state != sent:
                await stream.send_message(_x509_response(svids, snapshot))
                sent = state

    async def fetch_x509_bundles(
        self, stream: Stream[pb.X509BundlesRequest, pb.X509BundlesResponse]
    ) -> None:
        await self._stream_bundles(
            stream,
            lambda bundle: bundle.x509_der,
            lambda td, data: pb.X509BundlesResponse(bundles={td: data}),
        )

    async def _stream_bundles(
        self,
        stream: Stream[Any, Any],
        pick: Callable[[Bundle], bytes],
        respond: Callable[[str, bytes], Any],
    ) -> None:
        """Send the trust bundle (the part ``pick`` takes) now and on every change."""
        self._caller(stream)
        await recv_bounded(stream)
        await self._ready()
        sent: bytes | None = None
        async for snapshot in self.agent.hub.watch():
            selectors = self.attestor.caller(stream).selectors
            if not snapshot.svids_for(selectors) or snapshot.bundle is None:
                raise self._denied()
            data = pick(snapshot.bundle)
            if data != sent:
                await stream.send_message(respond(str(snapshot.bundle.trust_domain.id), data))
                sent = data

    # -- JWT -----------------------------------------------------------------------------

    async def fetch_jwt_svid(self, stream: Stream[pb.JWTSVIDRequest, pb.JWTSVIDResponse]) -> None:
        caller = self._caller(stream)
        request = await recv_bounded(stream)
        if request is None or not request.audience:
            raise GRPCError(Status.INVALID_ARGUMENT, "audience must be specified")
        # The CA's own rule, applied before the request costs a CA call.
        audience = requested_audience(list(request.audience))
        if audience is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "audience must be 1 to 16 strings")
        await self._ready()
        svids = self.agent.hub.current.svids_for(caller.selectors)
        if request.spiffe_id:
            svids = tuple(s for s in svids if str(s.spiffe_id) == request.spiffe_id)
        if not svids:
            raise self._denied()
        out = []
        for svid in svids:
            try:
                token = await self.agent.jwt_svid(svid, audience, caller.key)
            except RateLimited as exc:
                raise GRPCError(Status.RESOURCE_EXHAUSTED, "too many JWT-SVID requests") from exc
            except CaRequestFailed as exc:
                status = status_for(exc)
                log.warning(
                    "JWT-SVID not issued",
                    extra={"fields": {"code": exc.code, "status": status.name}},
                )
                raise GRPCError(status, "JWT-SVID not issued") from exc
            out.append(
                pb.JWTSVID(spiffe_id=str(svid.spiffe_id), svid=token.token, hint=svid.entry.hint)
            )
        await stream.send_message(pb.JWTSVIDResponse(svids=out))

    async def fetch_jwt_bundles(
        self, stream: Stream[pb.JWTBundlesRequest, pb.JWTBundlesResponse]
    ) -> None:
        await self._stream_bundles(
            stream,
            lambda bundle: bundle.jwt_jwks,
            lambda td, data: pb.JWTBundlesResponse(bundles={td: data}),
        )

    async def validate_jwt_svid(
        self, stream: Stream[pb.ValidateJWTSVIDRequest, pb.ValidateJWTSVIDResponse]
    ) -> None:
        self._caller(stream)
        request = await recv_bounded(stream)
        if request is None or not request.audience:
            raise GRPCError(Status.INVALID_ARGUMENT, "audience must be specified")
        if not request.svid:
            raise GRPCError(Status.INVALID_ARGUMENT, "svid must be specified")
        await self._ready()
        bundle = self.agent.hub.current.bundle
        if bundle is None:
            raise GRPCError(Status.UNAVAILABLE, "no trust bundle yet")
        try:
            spiffe_id, claims = validate_jwt_svid(
                request.svid, request.audience, bundle, self.agent.clock.now()
            )
        except InvalidJwtSvid as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid JWT-SVID: {exc.reason}") from exc
        response = pb.ValidateJWTSVIDResponse(spiffe_id=str(spiffe_id))
        response.claims.update(_plain(claims))
        await stream.send_message(response)


def status_for(exc: CaRequestFailed) -> Status:
    """The Workload API status for a CA failure.

    A request the CA finds malformed (400, 413, 422: e.g. a bad audience) is
    ``INVALID_ARGUMENT``; a refusal (401, 403, 404, other 4xx: no entry, an
    evicted agent) is ``PERMISSION_DENIED``; an unreachable or failing CA
    stays ``UNAVAILABLE``, which clients retry.
    """
    if isinstance(exc, CaRejected):
        if exc.status in (400, 413, 422):
            return Status.INVALID_ARGUMENT
        return Status.PERMISSION_DENIED
    return Status.UNAVAILABLE


def _plain(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims a protobuf Struct can hold (JSON values)."""
    return {
        k: v for k, v in claims.items() if isinstance(v, str | int | float | bool | list | dict)
    }


async def serve_workload_api(
    api: WorkloadApi, socket_path: Path, mode: int = 0o666, group: str | None = None
) -> Server:
    """Listen on ``socket_path`` (replacing a stale socket) and return the running server.

    Mode 0666 by default: any local process may connect (the API authenticates
    each caller by its pinned credentials and gives nothing to a caller no
    entry names); with ``group`` use 0660 so that only that group's members can.
    """
    return await start_server([api], api.attestor, path=socket_path, mode=mode, group=group)
