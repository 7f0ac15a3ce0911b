"""The ``meshward`` command: parses, wires, runs — the logic lives elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from meshward import __version__
from meshward.cli.commands import ca, ca_ops, check, console, pdp, policy, replay, up
from meshward.cli.commands.agent import agent_app
from meshward.cli.commands.common import GlobalOptions

__all__ = ["app", "hoist_global_options", "main"]

# Global options, accepted before or after the subcommand (all take a value).
GLOBAL_OPTIONS = ("--config", "--state-dir", "--log-format", "--log-level")

app = typer.Typer(
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


# Command groups. Each module holds one group and only parses and wires.
app.command("up")(up.up_command)
policy.policy_app.command("replay")(replay.replay_command)
app.add_typer(policy.policy_app, name="policy")
app.command("check")(check.check_command)
app.add_typer(pdp.app, name="pdp")
app.add_typer(agent_app, name="agent")
ca_ops.register(ca.app, ca.entry_app, ca.token_app)
app.add_typer(ca.app, name="ca")
app.command("console")(console.console_command)


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """``argv`` with the global options moved in front of the subcommand.

    ``meshward ca status --state-dir X`` becomes ``meshward --state-dir X ca
    status``; everything after ``--`` is left alone.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and ("=" in arg or i + 1 < len(argv)):
            taken = 1 if "=" in arg else 2
            front.extend(argv[i : i + taken])
            i += taken
            continue
        rest.append(arg)
        i += 1
    return front + rest


def main() -> None:
    app(args=hoist_global_options(sys.argv[1:]), prog_name="meshward")
