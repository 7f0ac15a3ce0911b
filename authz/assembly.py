"""Assembles the PDP from settings: the parts, no sockets, no policies loaded yet.

:func:`build_pdp` builds the trust bundle, the token verifier, the engine
holder, the decision cache, the decider, the metrics, the policy runtime and
the HTTP application, and hands them back as one :class:`Pdp`;
:mod:`authz.server` serves it and :mod:`authz.supervisor` runs it in worker
processes.

Errors (below :class:`authz.errors.AuthzError`)::

    PdpError            code "pdp_start" (bad configuration: exit 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI

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
from authz.sources.runtime import PolicyRuntime, build_policy_runtime
from meshward.clock import Clock, SystemClock
from meshward.settings import (
    OidcIssuerSettings,
    PdpSettings,
    Settings,
    secret_value,
)

__all__ = ["Pdp", "PdpError", "build_authenticator", "build_pdp"]


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
