"""What every command shares: settings loading and exit codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NoReturn

import typer

from meshward.cli.options import GlobalOptions
from meshward.logs import configure_logging
from meshward.settings import Settings, SettingsError, load_settings

__all__ = ["ExitCode", "fail", "settings_from"]


class ExitCode(IntEnum):
    """Exit codes everywhere: success, a negative result, bad input or configuration."""

    OK = 0
    NEGATIVE = 1
    BAD_INPUT = 2


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    typer.echo(f"meshward: {message}", err=True)
    raise typer.Exit(int(code))


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Load settings for a command: global options plus the command's ``overrides``.

    ``overrides`` is a nested dict such as ``pdp={"grpc_addr": ...}``; options
    the user left unset are ``None`` and do not hide the environment or file.
    """
    opts: GlobalOptions = ctx.find_root().obj
    values: dict[str, Any] = {
        "state_dir": opts.state_dir,
        "log_format": opts.log_format,
        "log_level": opts.log_level,
        **overrides,
    }
    try:
        settings = load_settings(opts.config, values)
    except SettingsError as exc:
        fail(str(exc))
    configure_logging(settings.log_format, settings.log_level)
    return settings
