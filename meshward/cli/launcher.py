"""Launches ``meshward up``: the CA, the PDP, a node agent and the console, in one process.

Every listener is checked before anything starts: a taken port is one
:class:`~meshward.listen.AddressInUse` (the command prints it in one line,
naming the flag that moves it, and exits 2) and nothing is left running.
The CA is created in ``<state-dir>/ca`` on first start (see :mod:`ca.embedded`;
its passphrase, unless configured, in ``<state-dir>/ca-passphrase``) and
serves its HTTPS API on ``ca.addr``. The PDP serves ``pdp.policies``
(``./policies``) on its ports, trusts the CA's bundle
(``<state-dir>/ca/bundle.json``: X.509 and JWT authorities) unless
``pdp.trust_bundle`` names another, and writes a decision log to
``<state-dir>/decisions.jsonl`` unless ``decision_log.path`` is set. It
authenticates exactly as ``meshward pdp serve`` does with the same settings
(``pdp.trust_peer_principal`` included: ``up`` changes no authentication
setting). A node agent (:mod:`meshward.cli.up_agent`) serves the Workload API and
SDS under ``<state-dir>/agent``. SIGINT/SIGTERM stop all of them. Logs are
warnings only unless ``--log-level`` (or ``log_level``) says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import typer
import uvloop

from agent.errors import AgentError
from agent.run import AgentServices
from authz.assembly import build_pdp
from authz.server import PdpServer
from ca.embedded import bundle_file, prepare_embedded_ca
from ca.server import CaServer
from ca.service import CertificateAuthority
from ca.wiring import ca_files
from console.server import ConsoleServer
from meshward.cli.up_agent import start_embedded_agent
from meshward.listen import ensure_free
from meshward.settings import Settings

__all__ = ["Example", "examples", "listeners", "run_up"]

log = logging.getLogger(__name__)

_SHOP = "spiffe://meshward.local/ns/shop/sa"


@dataclass(frozen=True)
class Example:
    """A ready-to-paste command and the answer it gets from the example policies."""

    title: str
    command: str
    expect: str  # "allow" or "deny"


def _authorize_body(method: str) -> dict[str, str]:
    return {
        "principal": f'Workload::"{_SHOP}/frontend"',
        "action": f'Action::"{method}"',
        "resource": f'Service::"{_SHOP}/catalog"',
    }


def _quote(doc: object) -> str:
    return "'" + json.dumps(doc, separators=(",", ":")).replace("'", "'\\''") + "'"


def examples(settings: Settings) -> list[Example]:
    """Commands that get an allow and a deny from the example policies.

    They work against ``meshward up`` and against ``meshward pdp serve`` with the
    same settings alike: none relies on an authentication setting.
    """
    grpc_addr, http = settings.pdp.grpc_addr, f"http://{settings.pdp.http_addr}"
    out = []
    for method, uri, expect in (("GET", "/healthz", "allow"), ("DELETE", "/orders", "deny")):
        out.append(
            Example(
                f"Envoy ext_authz (gRPC): anonymous {method} {uri} on the catalog host",
                f"meshward pdp ask --grpc-addr {grpc_addr} --host catalog"
                f" --method {method} --path {uri}",
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
                f"curl -si {http}/auth/nginx -H 'Host: catalog' "
                f"-H 'X-Original-Method: GET' -H 'X-Original-URI: {uri}'",
                expect,
            )
        )
    return out


def _embedded(settings: Settings, bundle: Path) -> Settings:
    update: dict[str, object] = {}
    if settings.pdp.trust_bundle is None:
        update["trust_bundle"] = bundle
    pdp = settings.pdp.model_copy(update=update)
    changes: dict[str, object] = {"pdp": pdp}
    if settings.decision_log.path is None:
        log_path = str(settings.state_dir / "decisions.jsonl")
        changes["decision_log"] = settings.decision_log.model_copy(update={"path": log_path})
    return settings.model_copy(update=changes)


async def _start_agent(settings: Settings, ca: CertificateAuthority) -> AgentServices | None:
    """The node agent beside the CA; ``up`` goes on without it if it cannot start."""
    try:
        return await start_embedded_agent(
            settings, ca, lambda line: typer.echo(f"meshward: agent {line}")
        )
    except (AgentError, OSError) as exc:
        log.warning("node agent not started", extra={"fields": {"error": str(exc)}})
        typer.echo(f"meshward: node agent not started: {exc}")
        return None


async def _up(settings: Settings, ca: CertificateAuthority) -> None:
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
        addr_flag="--ca-addr",
    )
    pdp = build_pdp(settings)
    server = PdpServer(pdp)
    ca_task: asyncio.Task[None] | None = None
    console_task: asyncio.Task[None] | None = None
    agent: AgentServices | None = None
    console_dir = tempfile.TemporaryDirectory(prefix="meshward-console-")
    console = ConsoleServer(settings, Path(console_dir.name), addr_flag="--console-addr")
    try:
        ca_server.bind()
        await server.start()
        ca_task = asyncio.create_task(ca_server.serve())
        console_task = asyncio.create_task(console.serve())
        typer.echo(
            f"meshward: CA API on https://{settings.ca.addr} (trust domain {ca.trust_domain};"
            f" admin SVID in {settings.state_dir / 'admin'})"
        )
        agent = await _start_agent(settings, ca)
        typer.echo(f"meshward: PDP trusts the CA bundle {settings.pdp.trust_bundle}")
        typer.echo(f"meshward: decision log in {settings.decision_log.path}")
        typer.echo(
            f"meshward: PDP ext_authz gRPC on {settings.pdp.grpc_addr}, "
            f"HTTP on http://{settings.pdp.http_addr} (policies {pdp.engines.version})"
        )
        typer.echo(
            f"meshward: metrics: curl -s http://{settings.pdp.http_addr}/metrics (PDP);"
            f" curl -s --cacert {bundle_file(settings).with_suffix('.pem')}"
            f" https://{settings.ca.addr}/metrics (CA); see docs/operations.md#metrics"
        )
        typer.echo(f"meshward: web console on {console.url}")
        if shutil.which("meshward") is None:
            typer.echo(
                "meshward: `meshward` is not on PATH: run `. .venv/bin/activate` first,"
                " or type .venv/bin/meshward"
            )
        typer.echo("meshward: try these (the answer each gets is in brackets):")
        for example in examples(settings):
            typer.echo(f"  # {example.title} [{example.expect}]\n  {example.command}")
        typer.echo("meshward: ready; Ctrl-C stops", err=False)
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({ca_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        console.shutdown()
        if console_task is not None:
            await asyncio.gather(console_task, return_exceptions=True)
        console_dir.cleanup()
        if agent is not None:
            await agent.aclose()
        ca_server.shutdown()
        if ca_task is not None:
            await asyncio.gather(ca_task, return_exceptions=True)
        await server.stop()


def listeners(settings: Settings) -> list[tuple[str, str, str]]:
    """``(address, what, flag)`` of every port ``up`` opens."""
    return [
        (settings.ca.addr, "CA API", "--ca-addr"),
        (settings.pdp.grpc_addr, "PDP gRPC", "--grpc-addr"),
        (settings.pdp.http_addr, "PDP HTTP", "--http-addr"),
        (settings.console.addr, "web console", "--console-addr"),
    ]


def run_up(settings: Settings) -> None:
    """Start every part that exists and block until interrupted.

    Raises :class:`~meshward.listen.AddressInUse` before starting anything
    when a port is taken.
    """
    ensure_free(listeners(settings))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(f"meshward: state in {settings.state_dir.resolve()}")
    typer.echo(f"meshward: policies from {settings.pdp.policies}")
    if not ca_files(settings).exists():
        typer.echo(f"meshward: creating a CA for {settings.ca.trust_domain} (first start)")
    ca = prepare_embedded_ca(settings)
    uvloop.run(_up(_embedded(settings, bundle_file(settings)), ca))
