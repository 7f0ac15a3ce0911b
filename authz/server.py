"""Serves one PDP process: gRPC ext_authz and HTTP on one event loop.

:class:`PdpServer` runs the gRPC server (``grpc.aio``: ext_authz, health,
reflection) and the HTTP application (uvicorn) of a :class:`authz.assembly.Pdp`
on one uvloop event loop; :func:`serve` builds the PDP from settings and
serves it until SIGTERM or SIGINT. :mod:`authz.supervisor` runs one such
process per ``--workers``.

Start-up order: a process never answers a check its policies did not
decide. From a directory (read in well under a second) the policies load
first and the ports open once they are active. From a Git remote (a fetch can
take long, and the port shows the process is alive) the ports open first with
gRPC health ``NOT_SERVING``, ``/readyz`` 503 and every check answered
``UNAVAILABLE`` / 503 until the first version passes the gate; then health
turns ``SERVING``. With several workers the policies always load first:
siblings share the ports, so a worker listens only once it can serve. On SIGTERM or
SIGINT: health ``NOT_SERVING``, stop accepting, let in-flight checks finish
(``pdp.drain_seconds``), exit 0.

Errors (below :class:`authz.errors.AuthzError`)::

    PdpError            code "pdp_start" (a port is taken, policies fail: exit 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from authz.adapters import envoy_grpc
from authz.assembly import Pdp, build_pdp
from authz.errors import PdpError, SourceError
from authz.sources.protocol import Refreshable
from meshward.asgi import QuietUvicorn
from meshward.listen import AddressInUse, listen
from meshward.settings import Settings

__all__ = ["PdpError", "PdpServer", "serve"]

log = logging.getLogger(__name__)


class PdpServer:
    """gRPC + HTTP for one process. ``async with PdpServer(pdp):`` or start/stop."""

    def __init__(self, pdp: Pdp) -> None:
        self.pdp = pdp
        self.health = health_aio.HealthServicer()
        self._grpc: grpc.aio.Server | None = None
        self._http: QuietUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._serving_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        settings = self.pdp.settings.pdp
        reuse_port = settings.workers > 1
        # Workers share the ports: the kernel hands connections to every worker
        # that listens, so a worker listens only once its policies are active,
        # and never turns away traffic a ready sibling could serve. A local
        # directory loads first too; only a remote source listens while it loads.
        load_first = reuse_port or not isinstance(self.pdp.policies.gate.source, Refreshable)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if load_first:
            await self._load()
        server = grpc.aio.server(
            options=[
                # Only workers share a port. A single process refuses a port
                # that is taken, instead of silently splitting its traffic
                # with whatever else bound it with SO_REUSEPORT.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.max_metadata_size", 256 * 1024),
            ]
        )
        server.add_generic_rpc_handlers([envoy_grpc.handler(self.pdp.decider)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [
                envoy_grpc.SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        taken = AddressInUse(settings.grpc_addr, "PDP gRPC", "--grpc-addr", "cannot bind")
        try:
            bound = server.add_insecure_port(settings.grpc_addr)
        except RuntimeError as exc:  # grpc raises on a taken port
            raise PdpError(taken.one_line()) from exc
        if bound == 0:
            raise PdpError(taken.one_line())
        try:
            http_sock = listen(
                settings.http_addr, reuse_port=reuse_port, what="PDP HTTP", flag="--http-addr"
            )
        except AddressInUse as exc:
            raise PdpError(exc.one_line()) from exc
        await server.start()
        self._grpc = server
        config = uvicorn.Config(
            self.pdp.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            loop="none",
            # The immediate peer is the socket's address: X-Forwarded-For never
            # decides who is a trusted proxy.
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, math.ceil(settings.drain_seconds)),
        )
        self._http = QuietUvicorn(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[http_sock]))
        if not load_first:
            await self._load()

    async def _load(self) -> None:
        for source in self.pdp.key_sources:
            await source.refresh()
        await self.load_policies()

    async def load_policies(self) -> None:
        """Activate the first policy version through the gate, keep following the
        source, and turn health SERVING (raises :class:`PdpError`).

        With ``pdp.wait_for_policies`` a source with no valid version yet is not
        an error: health stays ``NOT_SERVING`` (every check denies) until the
        first version passes the gate.
        """
        wait = self.pdp.settings.pdp.wait_for_policies
        try:
            await self.pdp.policies.start(wait=wait)
        except SourceError as exc:
            raise PdpError(str(exc)) from exc
        if self.pdp.engines.ready:
            await self._serving()
            return
        loop = asyncio.get_running_loop()

        def first_activation(_activation: object) -> None:
            if self._serving_task is None and not self._stopping:
                self._serving_task = loop.create_task(self._serving())

        self.pdp.policies.gate.on_activate(first_activation)

    async def _serving(self) -> None:
        self.pdp.metrics.policies_loaded.set(1)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("policies active", extra={"fields": {"version": self.pdp.engines.version}})

    async def _set_health(self, status: Any) -> None:
        for name in ("", envoy_grpc.SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Stop accepting, drain in-flight checks, close."""
        grace = self.pdp.settings.pdp.drain_seconds
        self._stopping = True
        if self._serving_task is not None:
            await self._serving_task
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._http is not None:
            self._http.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._http_task
        await self.pdp.policies.stop()
        if self.pdp.cache is not None:
            await self.pdp.cache.aclose()

    async def __aenter__(self) -> PdpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(settings: Settings, announce: bool) -> None:
    """Build the PDP from settings and serve it until SIGTERM or SIGINT (drained)."""
    pdp = build_pdp(settings)
    server = PdpServer(pdp)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    if announce:
        print(
            f"meshward pdp: ext_authz gRPC on {settings.pdp.grpc_addr}, "
            f"HTTP on http://{settings.pdp.http_addr}, policies {pdp.engines.version[:12]}",
            flush=True,
        )
    await stop.wait()
    log.info("shutting down: draining in-flight checks")
    await server.stop()
