"""The global options (``--config``, ``--state-dir``, ``--log-format``, ``--log-level``).

They are accepted before or after the subcommand: :func:`hoist_global_options`
moves them in front before Typer parses. The root command stores them in a
:class:`GlobalOptions` as the context's ``obj``; commands read them through
:func:`meshward.cli.commands.common.settings_from`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GLOBAL_OPTIONS", "GlobalOptions", "hoist_global_options"]

# Global options, accepted before or after the subcommand (all take a value).
GLOBAL_OPTIONS = ("--config", "--state-dir", "--log-format", "--log-level")


@dataclass(frozen=True)
class GlobalOptions:
    config: Path | None
    state_dir: Path | None
    log_format: str | None
    log_level: str | None


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
