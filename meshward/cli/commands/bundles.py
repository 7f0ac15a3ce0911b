"""A policy directory loaded for a command: the bundle, or every problem printed."""

from __future__ import annotations

from pathlib import Path

import typer

from authz.engine.bundle import PolicyBundle, load_bundle
from authz.errors import BundleError, Problem
from meshward.cli.commands.common import ExitCode

__all__ = ["load_bundle_or_none", "load_or_exit", "print_problems"]


def print_problems(directory: Path, problems: tuple[Problem, ...] | list[Problem]) -> None:
    """Every problem on stderr as ``DIR/FILE:LINE:COL: code: message``."""
    for p in problems:
        where = p.file if p.file == str(directory) else (directory / p.file).as_posix()
        typer.echo(f"{where}:{p.line}:{p.column}: {p.code}: {p.message}", err=True)


def load_bundle_or_none(directory: Path) -> PolicyBundle | None:
    """The bundle, or None after printing every problem."""
    try:
        return load_bundle(directory)
    except BundleError as exc:
        print_problems(directory, exc.problems)
        count = len(exc.problems)
        plural = "s" if count != 1 else ""
        typer.echo(f"meshward: {directory}: {count} problem{plural}; not loaded", err=True)
        return None


def load_or_exit(directory: Path) -> PolicyBundle:
    """Load the bundle or print every problem and exit 2."""
    bundle = load_bundle_or_none(directory)
    if bundle is None:
        raise typer.Exit(int(ExitCode.BAD_INPUT))
    return bundle
