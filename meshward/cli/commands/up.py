"""The ``meshward up`` command: its options; :mod:`meshward.cli.launcher` runs the parts."""

from __future__ import annotations

from typing import Annotated

import typer

from authz.errors import AuthzError
from ca.errors import CaError
from console.server import ConsoleError
from meshward.cli.commands.common import fail, settings_from
from meshward.cli.launcher import run_up
from meshward.listen import AddressInUse
from meshward.logs import configure_logging

__all__ = ["app", "up_command"]

app = typer.Typer(rich_markup_mode=None, add_completion=False)


def _addr(flag: str, what: str, default: str) -> object:
    return typer.Option(flag, help=f"{what} (default {default}).", show_default=False)


@app.command("up")
def up_command(
    ctx: typer.Context,
    ca_addr: Annotated[str | None, _addr("--ca-addr", "CA HTTPS API", "127.0.0.1:8443")] = None,
    grpc_addr: Annotated[
        str | None, _addr("--grpc-addr", "PDP Envoy ext_authz gRPC", "127.0.0.1:9191")
    ] = None,
    http_addr: Annotated[
        str | None,
        _addr("--http-addr", "PDP forward-auth, decision API, metrics", "127.0.0.1:8181"),
    ] = None,
    console_addr: Annotated[
        str | None, _addr("--console-addr", "web console (setting console.addr)", "127.0.0.1:8080")
    ] = None,
) -> None:
    """Run the CA, the PDP, a node agent and the web console; print where each listens.

    State (CA keys, the generated CA passphrase, the decision log) lives in
    --state-dir (default ./.meshward). A taken port is a one-line error and exit 2.
    Ctrl-C stops everything.
    """
    settings = settings_from(
        ctx,
        ca={"addr": ca_addr},
        pdp={"grpc_addr": grpc_addr, "http_addr": http_addr},
        console={"addr": console_addr},
    )
    if "log_level" not in settings.model_fields_set:
        # Quiet by default: the printed commands stay readable.
        configure_logging(settings.log_format, "warning")
    try:
        run_up(settings)
    except AddressInUse as exc:
        fail(exc.one_line())
    except (AuthzError, CaError, ConsoleError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
