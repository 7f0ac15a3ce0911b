"""``meshward policy``: validate, test and format a policy directory.

Each command parses its options, calls :mod:`authz`, prints, and exits with
0 (success), 1 (a negative result: failed tests, unformatted files) or 2 (bad
input: the bundle does not load). Add a command with ``@app.command``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import cedarpy
import typer

from authz.engine.bundle import visible_files
from authz.engine.cedarsource import SourceMap, locate_error
from authz.engine.evaluation import Engine
from authz.engine.model import EntityUid, InvalidEntityUid
from authz.engine.whocan import who_can
from authz.errors import Problem
from authz.lifecycle.policytest import run_tests
from authz.lifecycle.scaffold import ScaffoldError, scaffold
from meshward.cli.commands.bundles import load_bundle_or_none, load_or_exit, print_problems
from meshward.cli.commands.common import ExitCode, fail, settings_from
from meshward.cli.commands.replay import replay_command

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    name="policy",
    help="Validate, test and format a Cedar policy directory.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DirArg = Annotated[
    Path,
    typer.Argument(
        help="Policy directory: schema.cedarschema, *.cedar, entities.json, tests/*.yaml.",
        show_default=False,
        metavar="DIR",
    ),
]


@app.command("validate")
def validate_command(
    directories: Annotated[
        list[Path],
        typer.Argument(
            help="Policy directories: schema.cedarschema, *.cedar, entities.json, tests/*.yaml.",
            show_default=False,
            metavar="DIR",
        ),
    ],
) -> None:
    """Parse and validate the policies against the schema; check entities and test files.

    Prints every problem as DIR/FILE:LINE:COL and exits 2 if any directory has one.
    """
    failed = False
    for directory in directories:
        bundle = load_bundle_or_none(directory)
        if bundle is None:
            failed = True
            continue
        cases = sum(len(s.cases) for s in bundle.tests)
        typer.echo(
            f"ok: {directory}: {len(bundle.policies)} policies, {len(bundle.tests)} test files, "
            f"{cases} test cases (version {bundle.version})"
        )
    if failed:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


@app.command("test")
def test_command(
    directory: DirArg,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list the cases that pass.")
    ] = False,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Run only the cases whose 'FILE SUITE / CASE' contains PATTERN "
            "(case-insensitive; * and ? as in a glob).",
            metavar="PATTERN",
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit", help="Also write the results as JUnit XML to FILE.", metavar="FILE"
        ),
    ] = None,
) -> None:
    """Run the YAML test cases in DIR/tests; end with 'N passed, N failed'.

    Before it, a coverage line: the policies that determined no test's decision.
    Exits 1 if any case fails (or --filter matches none), 2 if the bundle does not load.
    """
    bundle = load_or_exit(directory)
    report = run_tests(bundle, pattern=pattern)
    for result in report.results:
        if result.passed and verbose:
            typer.echo(f"PASS {result.file}:{result.case.line} {result.case.name}")
        elif not result.passed:
            typer.echo(
                f"FAIL {result.file}:{result.case.line} {result.case.name}: {result.failure}"
            )
    if pattern is None:
        uncovered = report.uncovered(bundle.policy_ids)
        total = len(bundle.policy_ids)
        line = f"coverage: {total - len(uncovered)}/{total} policies determine a test decision"
        typer.echo(line + (f"; not exercised: {', '.join(uncovered)}" if uncovered else ""))
    typer.echo(report.summary)
    if junit is not None:
        junit.write_text(report.junit_xml(), encoding="utf-8")
    if not report.ok or not report.results:
        raise typer.Exit(int(ExitCode.NEGATIVE))


@app.command("fmt")
def fmt_command(
    directory: DirArg,
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; list unformatted files and exit 1 if any."),
    ] = False,
    line_width: Annotated[int, typer.Option("--line-width", min=20)] = 80,
    indent: Annotated[int, typer.Option("--indent", min=1, max=8)] = 2,
) -> None:
    """Format every *.cedar file in DIR with Cedar's formatter (in place)."""
    if not directory.is_dir():
        print_problems(directory, [Problem(str(directory), 1, 1, "not-a-directory", "not found")])
        raise typer.Exit(int(ExitCode.BAD_INPUT))
    problems: list[Problem] = []
    changed: list[tuple[Path, str]] = []
    for path in visible_files(directory, "*.cedar"):
        rel = path.relative_to(directory).as_posix()
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(rel, 1, 1, "not-utf8", f"not UTF-8 text: {exc.reason}"))
            continue
        try:
            formatted = cedarpy.format_policies(text, line_width, indent)
        except ValueError as exc:
            offset = locate_error(text, str(exc), cedarpy.policies_to_json_str)
            pos = SourceMap(text).position(offset)
            problems.append(Problem(rel, pos.line, pos.column, "syntax-error", str(exc)))
            continue
        if not formatted.endswith("\n"):
            formatted += "\n"
        if formatted != text:
            changed.append((path, formatted))
    if problems:
        print_problems(directory, sorted(problems))
        raise typer.Exit(int(ExitCode.BAD_INPUT))
    for path, formatted in changed:
        if check:
            typer.echo(f"would reformat {path.as_posix()}")
        else:
            path.write_text(formatted, "utf-8")
            typer.echo(f"reformatted {path.as_posix()}")
    if check and changed:
        raise typer.Exit(int(ExitCode.NEGATIVE))
    if not changed:
        typer.echo("all policy files are formatted")


@app.command("init")
def init_command(
    directory: Annotated[
        Path, typer.Argument(help="A new or empty directory.", show_default=False, metavar="DIR")
    ],
) -> None:
    """Create a policy repository in DIR: the request model's schema, an example
    policy, entities and a test suite (it validates and its tests pass)."""
    try:
        written = scaffold(directory)
    except ScaffoldError as exc:
        fail(str(exc))
    for path in written:
        typer.echo(f"created {path}")
    typer.echo(f"next: meshward policy validate {directory} && meshward policy test {directory}")


@app.command("who-can")
def who_can_command(
    ctx: typer.Context,
    resource: Annotated[
        str,
        typer.Option(
            "--resource", help='The resource: Service::"…", or a bare id (a SPIFFE ID or host).'
        ),
    ],
    action: Annotated[
        str, typer.Option("--action", help='The action: Action::"GET", or a bare HTTP method.')
    ],
    policies: Annotated[
        Path | None,
        typer.Option("--policies", help="Policy directory (default: the pdp.policies setting)."),
    ] = None,
) -> None:
    """List the principals the policies allow to do ACTION on RESOURCE, one JSON
    object per line: "allow" outright, or "conditional" when a permit's
    conditions (path, peer, token) decide. Candidates come from entities.json,
    the principals the policies name, and Anonymous."""

    def entity(value: str, default_type: str) -> EntityUid:
        if "::" not in value:
            return EntityUid(default_type, value)
        try:
            return EntityUid.parse(value)
        except InvalidEntityUid as exc:
            fail(f"{value!r}: {exc}")

    directory = policies if policies is not None else Path(settings_from(ctx).pdp.policies)
    target = entity(resource, "Service")
    verb = entity(action, "Action")
    engine = Engine(load_or_exit(directory))
    answers = who_can(
        engine, EntityUid(verb.type, verb.id.upper() if "::" not in action else verb.id), target
    )
    for answer in answers:
        typer.echo(json.dumps(answer.to_json()))
    if not answers:
        typer.echo(f"meshward: nobody may {verb} on {target}", err=True)
        raise typer.Exit(int(ExitCode.NEGATIVE))


app.command("replay")(replay_command)
