"""``meshward up``: every part on its embedded defaults."""

from __future__ import annotations

import typer

from meshward.commands.common import settings_from
from meshward.up import run_up

__all__ = ["up_command"]


def up_command(ctx: typer.Context) -> None:
    """Run the CA and the PDP on embedded defaults and print where each listens."""
    settings = settings_from(ctx)
    run_up(settings)
