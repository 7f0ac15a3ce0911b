"""The ``meshward`` command: parses, wires, runs — the logic lives elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from meshward import __version__
from meshward.cli.lazy import LazyCommand, LazyGroup
from meshward.cli.options import GLOBAL_OPTIONS, GlobalOptions, hoist_global_options

__all__ = ["COMMANDS", "GLOBAL_OPTIONS", "app", "hoist_global_options", "main"]

# The commands, in the order `meshward --help` lists them: each module holds
# one command or group (its Typer ``app``), only parses and wires, and is
# imported only when its command runs (meshward.cli.lazy).
COMMANDS = (
    LazyCommand(
        "up",
        "meshward.cli.commands.up",
        "Run the CA, the PDP, a node agent and the web console; print where each listens.",
        group=False,
    ),
    LazyCommand(
        "check",
        "meshward.cli.commands.check",
        "Decide one request read as JSON on stdin; print the decision as JSON.",
        group=False,
    ),
    LazyCommand(
        "console",
        "meshward.cli.commands.console",
        "Serve the web console: policies, decisions, playground and identities, read-only.",
        group=False,
    ),
    LazyCommand(
        "policy",
        "meshward.cli.commands.policy",
        "Validate, test and format a Cedar policy directory.",
    ),
    LazyCommand(
        "pdp",
        "meshward.cli.commands.pdp",
        "The policy decision point: Envoy ext_authz (gRPC), forward-auth and decision API.",
    ),
    LazyCommand(
        "agent",
        "meshward.cli.commands.agent",
        "The node agent: keeps this node's SVIDs current for workloads and Envoy.",
    ),
    LazyCommand(
        "ca",
        "meshward.cli.commands.ca",
        "The certificate authority: SPIFFE X.509-SVIDs and JWT-SVIDs over HTTPS.",
    ),
)


class _Meshward(LazyGroup):
    entries = COMMANDS


app = typer.Typer(
    cls=_Meshward,
    rich_markup_mode=None,
    name="meshward",
    help="Zero-trust security for a service mesh: SPIFFE identities and Cedar authorization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"meshward {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with settings (see docs/operations.md)."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Where state and keys live (default ./.meshward)."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="Log as 'text' or 'json' lines.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(config, state_dir, log_format, log_level)


def main() -> None:
    app(args=hoist_global_options(sys.argv[1:]), prog_name="meshward")
