"""``meshward up``: every part on its embedded defaults."""

from __future__ import annotations

import typer

from meshward.commands.common import fail, settings_from

__all__ = ["up_command"]


def up_command(ctx: typer.Context) -> None:
    """Run the CA and the PDP on embedded defaults and print where each listens."""
    from authz.errors import AuthzError  # noqa: PLC0415
    from meshward.up import run_up  # noqa: PLC0415

    settings = settings_from(ctx)
    try:
        run_up(settings)
    except AuthzError as exc:
        fail(str(exc))
