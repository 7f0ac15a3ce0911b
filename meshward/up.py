"""``meshward up``: the CA and the PDP on embedded defaults, in one process tree."""

from __future__ import annotations

import logging

import typer

from meshward.settings import Settings

__all__ = ["run_up"]

log = logging.getLogger(__name__)


def run_up(settings: Settings) -> None:
    """Start every part that exists and block until interrupted."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(f"meshward: state in {settings.state_dir.resolve()}")
    typer.echo(f"meshward: policies from {settings.pdp.policies}")
