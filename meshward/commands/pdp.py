"""``meshward pdp serve``: the policy decision point (docs/pdp.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshward.commands.common import ExitCode, fail, settings_from

__all__ = ["app"]

app = typer.Typer(
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
    from authz.server import PdpError, run  # noqa: PLC0415 - keep `meshward --help` fast

    try:
        code = run(settings)
    except PdpError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    raise typer.Exit(code)
