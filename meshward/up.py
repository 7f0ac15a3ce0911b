"""``meshward up``: the CA, the PDP and a node agent on embedded defaults, in one process tree.

The CA is created in ``<state-dir>/ca`` on first start (see :mod:`ca.embedded`)
and serves its HTTPS API on ``ca.addr``. The PDP serves ``pdp.policies``
(``./policies``) on its default ports, trusts the CA's bundle
(``<state-dir>/ca/bundle.json``: X.509 and JWT authorities) unless
``pdp.trust_bundle`` names another, and, as the embedded defaults are for a
laptop, believes Envoy's mTLS principal (``pdp.trust_peer_principal``) so the
printed examples work as pasted. A node agent (:mod:`ca.agent.embedded`)
serves the Workload API and SDS under ``<state-dir>/agent``. SIGINT/SIGTERM
stop all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from meshward.settings import Settings

if TYPE_CHECKING:
    from ca.agent.run import AgentServices
    from ca.service import CertificateAuthority

__all__ = ["Example", "examples", "run_up"]

log = logging.getLogger(__name__)

_SHOP = "spiffe://meshward.local/ns/shop/sa"


@dataclass(frozen=True)
class Example:
    """A ready-to-paste command and the answer it gets from the example policies."""

    title: str
    command: str
    expect: str  # "allow" or "deny"


def _check_request(method: str, certificate: str) -> dict[str, object]:
    # The PDP believes Envoy's peer only with its certificate (source.certificate).
    source = {"principal": f"{_SHOP}/frontend", "certificate": certificate}
    return {
        "attributes": {
            "source": source,
            "destination": {"principal": f"{_SHOP}/catalog"},
            "request": {"http": {"method": method, "path": "/items", "host": "catalog"}},
        }
    }


def _authorize_body(method: str) -> dict[str, str]:
    return {
        "principal": f'Workload::"{_SHOP}/frontend"',
        "action": f'Action::"{method}"',
        "resource": f'Service::"{_SHOP}/catalog"',
    }


def _quote(doc: object) -> str:
    return "'" + json.dumps(doc, separators=(",", ":")).replace("'", "'\\''") + "'"


def examples(settings: Settings, certificate: str = "") -> list[Example]:
    """Commands that get an allow and a deny from the example policies.

    ``certificate`` is the frontend's X.509-SVID chain, URL-encoded as Envoy's
    ``include_peer_certificate`` sends it.
    """
    grpc_addr, http = settings.pdp.grpc_addr, f"http://{settings.pdp.http_addr}"
    check = "envoy.service.auth.v3.Authorization/Check"
    out = []
    for method, expect in (("GET", "allow"), ("DELETE", "deny")):
        out.append(
            Example(
                f"Envoy ext_authz: the frontend {method}s the catalog",
                f"grpcurl -plaintext -d {_quote(_check_request(method, certificate))} "
                f"{grpc_addr} {check}",
                expect,
            )
        )
    for method, expect in (("GET", "allow"), ("DELETE", "deny")):
        out.append(
            Example(
                f"Decision API: may the frontend {method} the catalog?",
                f"curl -s {http}/v1/authorize -d {_quote(_authorize_body(method))}",
                expect,
            )
        )
    for uri, expect in (("/healthz", "allow"), ("/orders", "deny")):
        out.append(
            Example(
                f"nginx forward-auth: anonymous GET {uri} (200, else 401)",
                f"curl -si {http}/auth/nginx -H 'Host: shop' "
                f"-H 'X-Original-Method: GET' -H 'X-Original-URI: {uri}'",
                expect,
            )
        )
    return out


def _embedded(settings: Settings, bundle: Path) -> Settings:
    update: dict[str, object] = {"trust_peer_principal": True}
    if settings.pdp.trust_bundle is None:
        update["trust_bundle"] = bundle
    pdp = settings.pdp.model_copy(update=update)
    return settings.model_copy(update={"pdp": pdp})


def _frontend_certificate(settings: Settings, ca: CertificateAuthority) -> str:
    """An SVID for the examples' frontend (files in ``<state-dir>/examples/frontend``)."""
    from ca.svidfiles import pem_chain, write_svid_files  # noqa: PLC0415
    from meshward.spiffe import SpiffeId  # noqa: PLC0415

    out = settings.state_dir / "examples" / "frontend"
    try:
        issued = write_svid_files(ca, SpiffeId.parse(f"{_SHOP}/frontend"), out, None)
    except Exception as exc:  # the examples then show a deny; up goes on
        log.warning("no example SVID", extra={"fields": {"error": str(exc)}})
        return ""
    return urllib.parse.quote(pem_chain(issued).decode("ascii"), safe="")


async def _start_agent(settings: Settings, ca: CertificateAuthority) -> AgentServices | None:
    """The node agent beside the CA; ``up`` goes on without it if it cannot start."""
    from ca.agent.embedded import start_embedded_agent  # noqa: PLC0415 - heavy imports
    from ca.agent.errors import AgentError  # noqa: PLC0415

    try:
        return await start_embedded_agent(
            settings, ca, lambda line: typer.echo(f"meshward: agent {line}")
        )
    except (AgentError, OSError) as exc:
        log.warning("node agent not started", extra={"fields": {"error": str(exc)}})
        typer.echo(f"meshward: node agent not started: {exc}")
        return None


async def _up(settings: Settings, ca: CertificateAuthority) -> None:
    from authz.server import PdpServer, build_pdp  # noqa: PLC0415 - heavy imports
    from ca.embedded import bundle_file  # noqa: PLC0415
    from ca.server import CaServer  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ca_server = CaServer(
        ca,
        settings.ca.addr,
        settings.state_dir / "ca" / "run",
        bundle_file(settings),
        own_signals=False,
    )
    pdp = build_pdp(settings)
    server = PdpServer(pdp)
    ca_task: asyncio.Task[None] | None = None
    agent: AgentServices | None = None
    try:
        await server.start()
        ca_task = asyncio.create_task(ca_server.serve())
        typer.echo(
            f"meshward: CA API on https://{settings.ca.addr} (trust domain {ca.trust_domain};"
            f" admin SVID in {settings.state_dir / 'admin'})"
        )
        agent = await _start_agent(settings, ca)
        typer.echo(f"meshward: PDP trusts the CA bundle {settings.pdp.trust_bundle}")
        typer.echo(
            f"meshward: PDP ext_authz gRPC on {settings.pdp.grpc_addr}, "
            f"HTTP on http://{settings.pdp.http_addr} (policies {pdp.engines.version})"
        )
        typer.echo(
            f"meshward: metrics at http://{settings.pdp.http_addr}/metrics (PDP) and"
            f" https://{settings.ca.addr}/metrics (CA); see docs/operations.md#metrics"
        )
        typer.echo("meshward: try these (the answer each gets is in brackets):")
        for example in examples(settings, _frontend_certificate(settings, ca)):
            typer.echo(f"  # {example.title} [{example.expect}]\n  {example.command}")
        typer.echo("meshward: ready; Ctrl-C stops", err=False)
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({ca_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        if agent is not None:
            await agent.aclose()
        ca_server.shutdown()
        if ca_task is not None:
            await asyncio.gather(ca_task, return_exceptions=True)
        await server.stop()


def run_up(settings: Settings) -> None:
    """Start every part that exists and block until interrupted."""
    import uvloop  # noqa: PLC0415

    from ca.embedded import bundle_file, prepare_embedded_ca  # noqa: PLC0415

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(f"meshward: state in {settings.state_dir.resolve()}")
    typer.echo(f"meshward: policies from {settings.pdp.policies}")
    ca = prepare_embedded_ca(settings)
    uvloop.run(_up(_embedded(settings, bundle_file(settings)), ca))
