"""``meshward check``: one decision from the command line (the contract's JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshward.commands.common import ExitCode, fail, settings_from

__all__ = ["check_command"]


def check_command(
    ctx: typer.Context,
    policies: Annotated[
        Path | None,
        typer.Option(
            "--policies",
            help="Policy directory (default: the pdp.policies setting, ./policies).",
            show_default=False,
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Add an explanation: candidate policies, scope matches, conditions that "
            'were false or erred, and the entities used (also "explain": true in the input).',
        ),
    ] = False,
) -> None:
    """Decide one request read as JSON on stdin; print the decision as JSON.

    Input: an object with "principal" (e.g. Workload::"spiffe://..."), "action"
    (e.g. Action::"GET"), "resource" (e.g. Service::"..."), an optional "context"
    object and optional "parents" (a list of entity references, e.g. groups).

    Output: {"decision": "allow" or "deny", "reasons": the determining policy
    ids, "errors": evaluation errors}, plus "explanation" with --explain (see
    docs/policies.md#why-was-i-denied). Exit 0 allow, 1 deny, 2 bad input.
    """
    from authz.engine import Engine  # noqa: PLC0415
    from authz.errors import RequestError  # noqa: PLC0415
    from authz.requestdoc import (  # noqa: PLC0415
        parse_request,
        read_document,
        wants_explanation,
    )
    from meshward.commands.policy import load_or_exit  # noqa: PLC0415

    directory = policies
    if directory is None:
        directory = Path(settings_from(ctx).pdp.policies)
    text = sys.stdin.read()
    try:
        document = read_document(text)
        request = parse_request(document)
        explain = explain or wants_explanation(document)
    except RequestError as exc:
        fail(f"bad request: {exc}")
    engine = Engine(load_or_exit(directory))
    decision = engine.evaluate(request)
    out = decision.to_json()
    if explain:
        out["explanation"] = engine.explain(request).to_json()
    typer.echo(json.dumps(out, indent=2 if explain else None))
    raise typer.Exit(int(ExitCode.OK if decision.allowed else ExitCode.NEGATIVE))
