"""``meshward policy replay``: what a candidate policy set does to logged traffic."""

from __future__ import annotations

import json
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.errors import BundleError, SourceError
from authz.lifecycle.replay import read_log, replay
from authz.sources.revision import materialize_candidate
from meshward.cli.commands.bundles import print_problems
from meshward.cli.commands.common import ExitCode, fail

__all__ = ["replay_command"]


class Format(StrEnum):
    text = "text"
    json = "json"


def replay_command(
    log: Annotated[
        Path,
        typer.Option("--log", help="Decision log (JSON lines) to replay.", show_default=False),
    ],
    policies: Annotated[
        str,
        typer.Option(
            "--policies",
            help="Candidate policies: a directory, or a Git revision such as HEAD, "
            "origin/main or HEAD:policies (REV:subdir) of the repository in --repo.",
            show_default=False,
        ),
    ],
    repo: Annotated[
        Path, typer.Option("--repo", help="Git repository that --policies revisions name.")
    ] = Path("."),
    allow_changes: Annotated[
        bool,
        typer.Option("--allow-changes", help="Exit 0 even when decisions change."),
    ] = False,
    examples: Annotated[
        int, typer.Option("--examples", min=0, help="How many changed decisions to list.")
    ] = 10,
    output: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
) -> None:
    """Re-evaluate every logged request against candidate policies; report changed decisions.

    Exits 0 when no decision changes, 1 when any does (unless --allow-changes),
    2 when the log or the policies cannot be read.
    """
    try:
        handle = log.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        fail(f"cannot read the decision log {log}: {exc.strerror}")
    with handle, tempfile.TemporaryDirectory(prefix="meshward-replay-") as tmp:
        try:
            root, version = materialize_candidate(policies, repo, Path(tmp))
        except SourceError as exc:
            fail(str(exc))
        try:
            bundle = load_bundle(root, version=version)
        except BundleError as exc:
            print_problems(root, exc.problems)
            fail(f"the candidate policies {policies} do not load")
        engine = Engine(bundle)
        report = replay(
            read_log(handle), engine.evaluate, candidate_version=version, examples=examples
        )
    if output is Format.json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(report.to_text())
    if report.replayed == 0 and report.bad_lines:
        fail(f"{log}: no line is a decision log entry")
    if report.changed and not allow_changes:
        raise typer.Exit(int(ExitCode.NEGATIVE))
