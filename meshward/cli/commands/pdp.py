"""``meshward pdp serve``: the policy decision point (docs/pdp.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from authz.adapters.ask import (
    AskError,
    answer_json,
    ask,
    check_request,
    check_request_json,
    headers_of,
)
from meshward.cli.commands.common import ExitCode, fail, settings_from

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    help="The policy decision point: Envoy ext_authz (gRPC), forward-auth and decision API.",
    no_args_is_help=True,
)


@app.command("serve")
def serve(
    ctx: typer.Context,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            help="Policy directory (default ./policies) or Git URL (file://, ssh://, "
            "https://, git@host:repo; see the policy_source settings in docs/policies.md).",
        ),
    ] = None,
    grpc_addr: Annotated[
        str | None,
        typer.Option("--grpc-addr", help="Envoy ext_authz gRPC listener (default 127.0.0.1:9191)."),
    ] = None,
    http_addr: Annotated[
        str | None,
        typer.Option(
            "--http-addr",
            help="Forward-auth, decision API, health and metrics (default 127.0.0.1:8181).",
        ),
    ] = None,
    trust_bundle: Annotated[
        Path | None,
        typer.Option(
            "--trust-bundle",
            help="SPIFFE trust bundle (JWK Set or PEM): X.509 authorities and JWT-SVID keys.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Processes sharing the ports (SO_REUSEPORT); default 1."),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis for the shared decision cache.")
    ] = None,
) -> None:
    """Serve Envoy ext_authz over gRPC and the HTTP adapters until SIGTERM/SIGINT.

    Authentication (trust_peer_principal, trusted_proxies, jwt_svid_audience_aliases,
    oidc_issuers, ...) is set in the pdp table of --config or MESHWARD_PDP__*;
    every setting and header is in docs/pdp.md.
    """
    settings = settings_from(
        ctx,
        pdp={
            "policies": policies,
            "grpc_addr": grpc_addr,
            "http_addr": http_addr,
            "trust_bundle": trust_bundle,
            "workers": workers,
            "redis_url": redis_url,
        },
    )
    # The servers (gRPC, uvicorn, FastAPI, the engine) load for this command only.
    from authz.supervisor import PdpError, run  # noqa: PLC0415

    try:
        code = run(settings)
    except PdpError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    raise typer.Exit(code)


def _read_text(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}", ExitCode.BAD_INPUT)


@app.command("ask")
def ask_command(
    ctx: typer.Context,
    grpc_addr: Annotated[
        str | None,
        typer.Option(
            "--grpc-addr",
            help="The PDP's ext_authz gRPC address (default pdp.grpc_addr, 127.0.0.1:9191).",
        ),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="HTTP method of the request.")] = "GET",
    path: Annotated[str, typer.Option("--path", help="Path and query of the request.")] = "/",
    host: Annotated[str, typer.Option("--host", help="Host (authority) of the request.")] = "",
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A request header 'Name: value' (repeat)."),
    ] = None,
    bearer: Annotated[
        str | None, typer.Option("--bearer", help="A bearer token (JWT-SVID or OIDC token).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source-principal",
            help="The caller's SPIFFE ID as Envoy's mTLS source.principal (believed only "
            "with pdp.trust_peer_principal, and only with --source-certificate unless "
            "pdp.trust_bare_principal).",
        ),
    ] = None,
    source_certificate: Annotated[
        Path | None,
        typer.Option(
            "--source-certificate",
            help="The caller's X.509-SVID chain (PEM file) as Envoy's source.certificate.",
        ),
    ] = None,
    destination: Annotated[
        str | None,
        typer.Option(
            "--destination-principal",
            help="The destination's SPIFFE ID (the resource, when set).",
        ),
    ] = None,
    request_json: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="A whole CheckRequest in Envoy's JSON form ('-' reads stdin); replaces the "
            "other request options.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 10.0,
) -> None:
    """Send one Envoy ext_authz Check to a running PDP and print its answer as JSON.

    Prints {"decision", "grpc_status", "http_status", "headers", "body"}: what
    Envoy would do with the request. Exit 0 allow, 1 deny, 2 bad input or no answer.
    """
    settings = settings_from(ctx, pdp={"grpc_addr": grpc_addr})
    try:
        if request_json is not None:
            text = sys.stdin.read() if request_json == "-" else request_json
            request = check_request_json(text)
        else:
            request = check_request(
                method=method,
                path=path,
                host=host,
                headers=headers_of(header or (), bearer),
                source_principal=source or "",
                source_certificate=_read_text(source_certificate),
                destination_principal=destination or "",
            )
        answer = answer_json(ask(settings.pdp.grpc_addr, request, timeout))
    except AskError as exc:
        fail(str(exc))
    typer.echo(json.dumps(answer, indent=2))
    raise typer.Exit(int(ExitCode.OK if answer["decision"] == "allow" else ExitCode.NEGATIVE))
