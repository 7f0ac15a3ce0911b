"""``meshward check``: one decision from the command line (the contract's JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from authz.engine.canonical import MalformedRequest
from authz.engine.evaluation import Engine
from authz.engine.model import Decision
from authz.engine.request import PathOptions
from authz.engine.requestdoc import (
    load_document,
    parse_request,
    wants_explanation,
)
from authz.errors import RequestError
from meshward.cli.commands.bundles import load_or_exit
from meshward.cli.commands.common import ExitCode, fail, settings_from

__all__ = ["app", "check_command"]

app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command("check")
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
    object and optional "parents" (a list of entity references, e.g. groups);
    an entity may also be {"type": ..., "id": ...}. Other fields are refused.
    A context.http part is the request as a client sent it and is mapped as
    the PDP maps a proxy's request (canonical path, raw_path; an ambiguous
    path such as one with %2F is a deny).

    Output: {"decision": "allow" or "deny", "reasons": the determining policy
    ids, "errors": evaluation errors}, plus "explanation" with --explain (see
    docs/policies.md#why-was-i-denied). Exit 0 allow, 1 deny, 2 bad input.
    """
    settings = settings_from(ctx).pdp
    directory = policies if policies is not None else Path(settings.policies)
    paths = PathOptions(settings.allow_encoded_slash, settings.case_insensitive_paths)
    text = sys.stdin.read()
    try:
        document = load_document(text)
        explain = explain or wants_explanation(document)
        request = parse_request(document, paths)
    except MalformedRequest as exc:  # ambiguous on the wire: the PDP denies it
        request = None
        decision = Decision.deny(f"request:{exc.code}")
    except RequestError as exc:
        fail(f"bad request: {exc}")
    engine = Engine(load_or_exit(directory))
    out: dict[str, object]
    if request is not None:
        decision = engine.evaluate(request)
        out = decision.to_json()
        if explain:
            out["explanation"] = engine.explain(request).to_json()
    else:
        out = decision.to_json()
    typer.echo(json.dumps(out, indent=2 if explain else None))
    raise typer.Exit(int(ExitCode.OK if decision.allowed else ExitCode.NEGATIVE))
