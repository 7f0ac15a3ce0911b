"""``meshward console``: the web console (docs/console.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from console.server import ConsoleError, serve
from meshward.cli.commands.common import ExitCode, fail, settings_from

__all__ = ["app", "console_command"]

app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command("console")
def console_command(
    ctx: typer.Context,
    addr: Annotated[
        str | None,
        typer.Option("--addr", help="Listen on HOST:PORT (default 127.0.0.1:8080)."),
    ] = None,
    pdp_url: Annotated[
        str | None,
        typer.Option("--pdp-url", help="PDP HTTP API (default http://<pdp.http_addr>)."),
    ] = None,
    ca_url: Annotated[
        str | None,
        typer.Option("--ca-url", help="CA HTTPS API (default https://<ca.addr>)."),
    ] = None,
) -> None:
    """Serve the web console: policies, decisions, playground and identities, read-only.

    Loopback only unless configured; bound elsewhere it requires a login with
    console.admin_token (or pdp.admin_token).
    """
    settings = settings_from(ctx, console={"addr": addr, "pdp_url": pdp_url, "ca_url": ca_url})
    try:
        code = serve(settings)
    except ConsoleError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    raise typer.Exit(code)
