"""What every command shares: the global options, settings loading, exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from meshward.settings import Settings

__all__ = ["ExitCode", "GlobalOptions", "fail", "settings_from"]


class ExitCode(IntEnum):
    """Exit codes everywhere: success, a negative result, bad input or configuration."""

    OK = 0
    NEGATIVE = 1
    BAD_INPUT = 2


@dataclass(frozen=True)
class GlobalOptions:
    config: Path | None
    state_dir: Path | None
    log_format: str | None
    log_level: str | None


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    typer.echo(f"meshward: {message}", err=True)
    raise typer.Exit(int(code))


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Load settings for a command: global options plus the command's ``overrides``.

    ``overrides`` is a nested dict such as ``pdp={"grpc_addr": ...}``; options
    the user left unset are ``None`` and do not hide the environment or file.
    """
    # Loaded here, not at import: ``--help`` and ``--version`` need neither.
    from meshward.logs import configure_logging  # noqa: PLC0415
    from meshward.settings import SettingsError, load_settings  # noqa: PLC0415

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
