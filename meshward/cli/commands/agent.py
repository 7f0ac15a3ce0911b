"""``meshward agent``: the node agent (Workload API, Envoy SDS, file mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from agent.run import AgentStartupError, plan_agent, run_agent
from meshward.cli.commands.common import fail, settings_from

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    help="The node agent: keeps this node's SVIDs current for workloads and Envoy.",
    no_args_is_help=True,
)


@app.command("run")
def run_command(
    ctx: typer.Context,
    ca_url: Annotated[
        list[str] | None,
        typer.Option(
            "--ca-url",
            metavar="URL",
            help="The CA API, e.g. https://127.0.0.1:8443; repeat (or comma-separate) for "
            "replicas, tried in turn.",
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option("--ca-bundle", help="The CA's bundle (JWK Set or PEM) to trust it first."),
    ] = None,
    trust_domain: Annotated[
        str | None, typer.Option("--trust-domain", help="Trust domain (default: ca's).")
    ] = None,
    join_token: Annotated[
        str | None,
        typer.Option(
            "--join-token",
            help="One-time join token (better: MESHWARD_AGENT__JOIN_TOKEN or --token-file).",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File with a join token or a k8s SA token."),
    ] = None,
    socket: Annotated[
        Path | None,
        typer.Option("--socket", help="Workload API socket (default <state-dir>/agent/api.sock)."),
    ] = None,
    sds: Annotated[
        str | None,
        typer.Option(
            "--sds", help="SDS on unix:/path or loopback HOST:PORT (with --sds-selector); '' off."
        ),
    ] = None,
    sds_selector: Annotated[
        list[str] | None,
        typer.Option(
            "--sds-selector",
            help="Loopback TCP SDS only (required there): the selectors its callers have (repeat).",
        ),
    ] = None,
    socket_group: Annotated[
        str | None,
        typer.Option("--socket-group", help="Group that may connect to the Workload API socket."),
    ] = None,
    sds_socket_group: Annotated[
        str | None,
        typer.Option("--sds-socket-group", help="Group that may connect to the SDS socket."),
    ] = None,
    write_dir: Annotated[
        Path | None,
        typer.Option("--write-dir", help="File mode: write svid.pem, svid_key.pem, bundle.pem."),
    ] = None,
    write_spiffe_id: Annotated[
        str | None, typer.Option("--write-spiffe-id", help="File mode: which SVID to write.")
    ] = None,
    write_command: Annotated[
        str | None, typer.Option("--write-command", help="File mode: run after each write.")
    ] = None,
    write_signal: Annotated[
        str | None, typer.Option("--write-signal", help="File mode: e.g. SIGHUP after writes.")
    ] = None,
    write_pid_file: Annotated[
        Path | None, typer.Option("--write-pid-file", help="File mode: pid for --write-signal.")
    ] = None,
    sync_interval: Annotated[
        float | None,
        typer.Option("--sync-interval", help="Seconds between bundle and entry checks."),
    ] = None,
) -> None:
    """Attest to the CA, then serve the Workload API, SDS and files until stopped.

    SIGUSR1 renews every SVID at once; SIGHUP re-reads bundle and entries.
    """
    # Imported here: gRPC and the Envoy protos take seconds to load; other commands need neither.
    settings = settings_from(
        ctx,
        agent={
            "ca_url": ",".join(ca_url) if ca_url else None,
            "ca_bundle": ca_bundle,
            "trust_domain": trust_domain,
            "join_token": join_token,
            "token_file": token_file,
            "socket": socket,
            "sds_addr": sds,
            "sds_selectors": tuple(sds_selector) if sds_selector else None,
            "socket_group": socket_group,
            "sds_socket_group": sds_socket_group,
            "write_dir": write_dir,
            "write_spiffe_id": write_spiffe_id,
            "write_command": write_command,
            "write_signal": write_signal,
            "write_pid_file": write_pid_file,
            "sync_interval": sync_interval,
        },
    )
    try:
        plan = plan_agent(settings)
        asyncio.run(run_agent(plan, announce=typer.echo))
    except AgentStartupError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
