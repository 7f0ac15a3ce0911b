"""Builds the PDP from settings and serves it: gRPC ext_authz and HTTP, N workers.

Wiring only. :func:`build_pdp` assembles the parts (trust bundle, token
verifier, engine holder, decider, metrics); :class:`PdpServer` runs the gRPC
server (``grpc.aio``: ext_authz, health, reflection) and the HTTP application
(uvicorn) on one uvloop event loop; :func:`run` starts one such process per
``--workers``, all bound to the same ports with ``SO_REUSEPORT``.

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

    PdpError            code "pdp_start" (bad configuration or policies: exit 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import math
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from authz.adapters import envoy_grpc
from authz.adapters.activepolicies import active_policies_router
from authz.adapters.admin import AdminGate
from authz.adapters.decisions import decisions_router
from authz.adapters.http import create_app
from authz.authn.audience import AudiencePolicy
from authz.authn.authenticator import Authenticator
from authz.authn.jwks import FileJwks, KeySource, UrlJwks
from authz.authn.jwt import JwtPolicy, JwtVerifier, OidcIssuer
from authz.authn.peer import PeerPolicy
from authz.authn.trust import TrustBundleFile, TrustBundles, TrustSource
from authz.cache.tiered import TieredCache
from authz.cache.wiring import build_cache
from authz.engine.decider import Decider, DecisionObserver, EngineHolder
from authz.engine.request import PathOptions
from authz.errors import AuthnError, PdpError, SourceError
from authz.observe.metrics import PdpMetrics
from authz.observe.recent import RecentDecisions
from authz.sources.childproc import set_parent_death_signal
from authz.sources.protocol import Refreshable
from authz.sources.runtime import (
    PolicyRuntime,
    build_policy_runtime,
    check_policies,
    for_worker,
)
from meshward.asgi import QuietUvicorn
from meshward.clock import Clock, SystemClock
from meshward.listen import AddressInUse, listen
from meshward.metrics import prepare_run_dir
from meshward.settings import (
    OidcIssuerSettings,
    PdpSettings,
    Settings,
    secret_value,
)
from meshward.workers import run_workers

__all__ = ["Pdp", "PdpError", "PdpServer", "build_pdp", "run"]

log = logging.getLogger(__name__)


def _key_source(issuer: OidcIssuerSettings, clock: Clock) -> KeySource:
    if (issuer.jwks_file is None) == (issuer.jwks_url is None):
        raise PdpError(f"OIDC issuer {issuer.issuer}: set exactly one of jwks_file, jwks_url")
    if issuer.jwks_file is not None:
        source = FileJwks(issuer.jwks_file, clock, issuer.refresh_min_seconds)
        try:
            source.load()
        except AuthnError as exc:
            raise PdpError(f"OIDC issuer {issuer.issuer}: {exc}") from exc
        return source
    return UrlJwks(
        str(issuer.jwks_url), clock, issuer.refresh_min_seconds, ca_file=issuer.jwks_ca_file
    )


def _followed_bundle(pdp: PdpSettings, bootstrap: TrustBundleFile, clock: Clock) -> TrustSource:
    """The bundle followed from the CA replicas (one trust domain: the bootstrap's)."""
    from authz.authn.trust_url import TrustBundleUrl  # noqa: PLC0415
    from meshward.endpoints import Endpoints, split_urls  # noqa: PLC0415
    from meshward.spiffe import TrustDomain  # noqa: PLC0415

    domains = list(bootstrap.current().bundles)
    if pdp.trust_domain is not None:
        td = TrustDomain.parse(pdp.trust_domain)
    elif len(domains) == 1:
        td = domains[0]
    else:
        raise PdpError("pdp.trust_bundle_url: set pdp.trust_domain (the bundle has several)")
    endpoints = Endpoints(split_urls(pdp.trust_bundle_url or ""), expand_dns=True)
    return TrustBundleUrl(endpoints, bootstrap, td, clock, pdp.trust_bundle_poll_seconds)


def build_authenticator(pdp: PdpSettings, clock: Clock) -> Authenticator:
    """Trust bundle, peer policy and token verifier from the settings."""
    bundles: TrustSource = TrustBundles()
    if pdp.trust_bundle is not None:
        # Followed as the CA rotates its keys; the first read must succeed.
        bundle_file = TrustBundleFile(
            pdp.trust_bundle, clock, pdp.trust_domain, pdp.trust_bundle_poll_seconds
        )
        try:
            bundle_file.load()
        except AuthnError as exc:
            raise PdpError(f"trust bundle {pdp.trust_bundle}: {exc.code}") from exc
        bundles = bundle_file
        if pdp.trust_bundle_url is not None:
            bundles = _followed_bundle(pdp, bundle_file, clock)
    elif pdp.trust_bundle_url is not None:
        raise PdpError("pdp.trust_bundle_url needs pdp.trust_bundle to trust the CA the first time")
    try:
        peer_policy = PeerPolicy.build(
            pdp.trust_peer_principal,
            pdp.trusted_proxies,
            trust_bare_principal=pdp.trust_bare_principal,
        )
        audience = AudiencePolicy.build(
            pdp.jwt_svid_audience_aliases, pdp.jwt_svid_any_destination_audiences
        )
        issuers = [
            OidcIssuer(
                i.issuer,
                frozenset(i.audiences),
                _key_source(i, clock),
                frozenset(i.algorithms),
                i.groups_claim,
            )
            for i in pdp.oidc_issuers
        ]
        policy = JwtPolicy(
            max_token_bytes=pdp.max_token_bytes,
            leeway_seconds=pdp.jwt_leeway_seconds,
        )
    except ValueError as exc:
        raise PdpError(str(exc)) from exc
    jwt = JwtVerifier(policy, bundles, issuers)
    return Authenticator(clock, peer_policy, bundles, jwt, audience)


@dataclass
class Pdp:
    """The assembled decision point; other parts plug into its seams."""

    settings: Settings
    clock: Clock
    engines: EngineHolder
    decider: Decider
    metrics: PdpMetrics
    app: FastAPI
    policies: PolicyRuntime
    key_sources: list[KeySource] = field(default_factory=list)
    cache: TieredCache | None = None


def build_pdp(settings: Settings, clock: Clock | None = None) -> Pdp:
    """Assemble the PDP (no sockets, no policies loaded yet)."""
    clock = clock or SystemClock()
    authenticator = build_authenticator(settings.pdp, clock)
    engines = EngineHolder()
    metrics = PdpMetrics()
    observers: list[DecisionObserver] = [metrics]
    if settings.tracing.enabled:
        observers.append(_decision_tracer(settings))
    # The decision cache: in-process tier, plus Redis when pdp.redis_url is set.
    cache = (
        build_cache(settings.cache, clock, settings.pdp.redis_url, metrics.cache)
        if settings.cache.enabled
        else None
    )
    decider = Decider(
        engines,
        authenticator,
        clock,
        cache=cache,
        observers=observers,
        remove_headers=settings.pdp.upstream_removed_headers(),
        paths=PathOptions(
            allow_encoded_slash=settings.pdp.allow_encoded_slash,
            case_insensitive=settings.pdp.case_insensitive_paths,
        ),
    )
    try:
        policies = build_policy_runtime(settings, clock, engines)
    except (SourceError, ValueError, OSError) as exc:
        raise PdpError(f"policy source: {exc}") from exc
    if cache is not None:
        # A new version is a new key space anyway; drop the in-process tier at once.
        policies.gate.on_activate(lambda activation: cache.on_activation(activation.version))
    for observer in policies.observers:
        decider.add_observer(observer)
    metrics.add_collector(policies.collector)
    app = create_app(decider, metrics, ext_authz_destination=settings.pdp.ext_authz_destination)
    app.include_router(policies.router)
    admin = _admin_gate(settings)
    app.include_router(active_policies_router(policies.gate, admin.refuse))
    if settings.pdp.recent_decisions:
        recent = RecentDecisions(settings.pdp.recent_decisions)
        decider.add_observer(recent)
        dl = settings.decision_log
        app.include_router(
            decisions_router(
                decider,
                recent,
                admin,
                dl.redact,
                headers=dl.headers,
                query_values=dl.query_values,
            )
        )
    jwt = authenticator.jwt
    sources = [i.keys for i in jwt.issuers.values()] if jwt else []
    return Pdp(
        settings,
        clock,
        engines,
        decider,
        metrics,
        app,
        policies,
        sources,
        cache,
    )


def _admin_gate(settings: Settings) -> AdminGate:
    pdp = settings.pdp
    try:
        return AdminGate(secret_value(pdp.admin_token, pdp.admin_token_file, "pdp admin token"))
    except ValueError as exc:
        raise PdpError(str(exc)) from exc


def _decision_tracer(settings: Settings) -> DecisionObserver:
    """The tracing observer; OpenTelemetry is imported here and only here (off: never)."""
    from authz.observe.tracing import TracingError, build_tracer  # noqa: PLC0415

    try:
        return build_tracer(settings.tracing)
    except TracingError as exc:
        raise PdpError(str(exc)) from exc


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
        envoy_grpc.register(server, self.pdp.decider)
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


async def _serve(settings: Settings, announce: bool) -> None:
    pdp = build_pdp(settings)
    # What exists now (modules, settings, the app) lives as long as the process:
    # keep the collector from walking it again on every full collection.
    gc.collect()
    gc.freeze()
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


def _run_one(settings: Settings, announce: bool) -> None:
    import uvloop  # noqa: PLC0415

    uvloop.run(_serve(settings, announce))


def _worker(settings: Settings, index: int) -> None:  # index last: run_workers passes it
    from meshward.logs import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_format, settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    set_parent_death_signal(signal.SIGTERM)  # a killed parent takes its workers with it
    try:
        _run_one(for_worker(settings, index), announce=index == 0)
    except PdpError as exc:
        log.error("worker cannot start", extra={"fields": {"worker": index, "error": str(exc)}})
        raise SystemExit(2) from exc


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code (:class:`PdpError` at start)."""
    workers = settings.pdp.workers
    if workers == 1:
        _run_one(settings, announce=True)
        return 0
    # Check the configuration and the policies once, before forking, so a bad
    # start is one clear error rather than N (unless told to wait for policies).
    if not settings.pdp.wait_for_policies:
        try:
            check_policies(settings)
        except SourceError as exc:
            raise PdpError(str(exc)) from exc
    # Workers share one /metrics: each writes its samples to files in this
    # run's directory, and any of them answers a scrape with the sum.
    run_dir = prepare_run_dir(settings.state_dir, f"pdp-{os.getpid()}")
    return run_workers(functools.partial(_worker, settings), workers, run_dir)
