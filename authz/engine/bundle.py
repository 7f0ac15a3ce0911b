"""A policy bundle: the schema, policies, entities and tests of one directory.

Layout (the same as a user's policy Git repository)::

    schema.cedarschema     Cedar schema (human syntax), required
    *.cedar                any number of policy files (subdirectories too)
    entities.json          optional static entities (groups, services, ...)
    tests/*.yaml           optional policy test suites (see authz.lifecycle.testsuite)

:func:`read_bundle` reads every file once, parses every policy on its own (so
every error is found), validates the policies against the schema, and either
returns the checked content as plain, picklable :class:`BundleData` or raises
:class:`~authz.errors.BundleError` listing every problem with its file, line
and column. Nothing is half-loaded. :func:`bundle_from_data` turns that
content into a :class:`PolicyBundle` without calling Cedar on the whole policy
set (only the small schema and entities are parsed again), so the heavy half
can run in another process (the PDP's gate does) and the light half in the
serving one. :func:`load_bundle` is both halves in one call.

The whole-set ``cedarpy.PolicySet`` of a bundle is built on first use only:
the sliced engine rarely needs it.

Policy ids are stable: the ``@id("...")`` annotation when a policy has one,
else ``<file>#<n>`` — the file's path in the bundle and the policy's 0-based
position among that file's policies.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from authz.engine.cedarsource import SourceMap, Statement, locate_error
from authz.engine.policytable import Policy, PolicyTable
from authz.engine.slicing import ScopeIndex, ScopeKeys, scope_keys
from authz.engine.statementcache import ParsedStatement, StatementCache, schema_key
from authz.errors import BundleError, Problem
from authz.lifecycle.testsuite import TestSuite, parse_suite
from authz.lifecycle.version import content_version

__all__ = [
    "ENTITIES_FILE",
    "SCHEMA_FILE",
    "BundleData",
    "Policy",
    "PolicyBundle",
    "PolicyTable",
    "bundle_from_data",
    "load_bundle",
    "policy_set_from",
    "read_bundle",
    "visible_files",
]

SCHEMA_FILE = "schema.cedarschema"
ENTITIES_FILE = "entities.json"
TESTS_DIR = "tests"
_GENERATED_ID = re.compile(r"`(policy\d+)`")


@dataclass(frozen=True, slots=True)
class BundleData:
    """A bundle's checked content as plain values (picklable): no Cedar handles."""

    version: str
    directory: Path
    policies: PolicyTable
    schema_text: str = field(repr=False)
    entities_text: str = field(repr=False)
    tests: tuple[TestSuite, ...] = field(repr=False)
    index: ScopeIndex | None = field(default=None, repr=False)  # the policies' scope index


class _LazyPolicySet:
    """The whole-set ``PolicySet`` of some policies, built on first use, once."""

    __slots__ = ("_built", "_lock")

    def __init__(self) -> None:
        self._built: cedarpy.PolicySet | None = None
        self._lock = threading.Lock()

    def get(self, policies: Sequence[Policy]) -> cedarpy.PolicySet:
        with self._lock:
            if self._built is None:
                self._built = policy_set_from(policies)
            return self._built


@dataclass(frozen=True, slots=True)
class PolicyBundle:
    """Everything the engine needs, parsed once. Immutable after loading."""

    version: str
    directory: Path
    policies: PolicyTable
    schema: cedarpy.Schema = field(repr=False)
    schema_text: str = field(repr=False)
    entities: cedarpy.Entities = field(repr=False)
    entity_records: tuple[Mapping[str, Any], ...] = field(repr=False)
    tests: tuple[TestSuite, ...] = field(repr=False)
    index: ScopeIndex | None = field(default=None, repr=False, compare=False)
    entities_text: str = field(default="", repr=False, compare=False)
    _whole: _LazyPolicySet = field(
        default_factory=_LazyPolicySet, init=False, repr=False, compare=False
    )

    @property
    def policy_set(self) -> cedarpy.PolicySet:
        """Every policy in one ``cedarpy.PolicySet`` (built from JSON on first use)."""
        return self._whole.get(self.policies)

    def policy(self, policy_id: str) -> Policy:
        for position, known in enumerate(self.policies.ids):
            if known == policy_id:
                return self.policies[position]
        raise KeyError(policy_id)

    @property
    def policy_ids(self) -> tuple[str, ...]:
        return self.policies.ids


def policy_set_from(policies: Sequence[Policy]) -> cedarpy.PolicySet:
    """A ``cedarpy.PolicySet`` of ``policies`` keyed by their stable ids (from JSON, no text)."""
    # The policies' JSON texts are spliced in as they are: nothing is decoded.
    static = ",".join(f"{json.dumps(p.id)}:{p.json_text}" for p in policies)
    document = f'{{"staticPolicies":{{{static}}},"templates":{{}},"templateLinks":[]}}'
    return cedarpy.PolicySet.from_json_str(document)


class _Files:
    """The bundle's files read as UTF-8, with problems for those that are not."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.problems: list[Problem] = []
        self.texts: dict[str, str] = {}

    def rel(self, path: Path) -> str:
        return path.relative_to(self.directory).as_posix()

    def read(self, path: Path) -> str | None:
        rel = self.rel(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(rel, 1, 1, "unreadable", exc.strerror or str(exc)))
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[: exc.start].decode("utf-8", errors="replace")
            pos = SourceMap(before).position(len(before))
            self.problems.append(
                Problem(rel, pos.line, pos.column, "not-utf8", f"not UTF-8 text: {exc.reason}")
            )
            return None
        self.texts[rel] = text
        return text


def _missing_schema_message(directory: Path) -> str:
    """Say where the schema is when the bundle is one directory further down."""
    message = f"{SCHEMA_FILE} not found"
    below = sorted(
        p.parent.relative_to(directory).as_posix()
        for p in visible_files(directory, SCHEMA_FILE)
        if p.parent != directory
    )
    if below:
        message += (
            f"; the bundle looks like it is in {below[0]}/: point --policies at that directory,"
            f' or for a Git repository set policy_source.subdir = "{below[0]}"'
            " (MESHWARD_POLICY_SOURCE__SUBDIR)"
        )
    return message


def visible_files(directory: Path, pattern: str) -> Iterator[Path]:
    """Files under ``directory`` matching ``pattern``, sorted, skipping dot-names."""
    for path in sorted(directory.rglob(pattern)):
        parts = path.relative_to(directory).parts
        if path.is_file() and not any(p.startswith(".") for p in parts):
            yield path


def load_bundle(directory: Path, *, version: str | None = None) -> PolicyBundle:
    """Load and check the bundle in ``directory``; raise BundleError with every problem."""
    return bundle_from_data(read_bundle(directory, version=version))


def bundle_from_data(data: BundleData, previous: PolicyBundle | None = None) -> PolicyBundle:
    """The :class:`PolicyBundle` of checked content; parses only the schema and entities.

    ``previous``: the bundle this one replaces. Its parsed schema (and, with
    the same schema, its entities) are taken over when their text is the
    same — Cedar's handles are immutable — so a change to policies alone
    parses nothing here. Raises :class:`BundleError` if they no longer parse
    (they did when checked).
    """
    problems: list[Problem] = []
    same_schema = previous is not None and previous.schema_text == data.schema_text
    if previous is not None and same_schema and previous.entities_text == data.entities_text:
        schema: cedarpy.Schema | None = previous.schema
        entities: cedarpy.Entities | None = previous.entities
        records: list[Mapping[str, Any]] = list(previous.entity_records)
    else:
        schema = previous.schema if previous is not None and same_schema else None
        if schema is None:
            schema = _parse_schema(data.schema_text, problems)
        entities, records = (
            (None, []) if schema is None else _parse_entities(data.entities_text, schema, problems)
        )
    if problems or schema is None or entities is None:
        raise BundleError(problems)
    return PolicyBundle(
        version=data.version,
        directory=data.directory,
        policies=data.policies,
        schema=schema,
        schema_text=data.schema_text,
        entities=entities,
        entity_records=tuple(records),
        tests=data.tests,
        index=data.index,
        entities_text=data.entities_text,
    )


def read_bundle(
    directory: Path, *, version: str | None = None, cache: StatementCache | None = None
) -> BundleData:
    """Read and check the bundle in ``directory`` (every Cedar check on the whole set).

    ``cache``: what earlier checks learnt about each statement
    (:mod:`authz.engine.statementcache`); only statements it does not know
    are parsed, and validated against this schema. The result is the same
    with or without it. Raises :class:`BundleError` with every problem.
    """
    cache = cache if cache is not None else StatementCache(generations=1)
    try:
        return _read_bundle(Path(directory), version, cache)
    finally:
        cache.commit()


def _read_bundle(directory: Path, version: str | None, cache: StatementCache) -> BundleData:
    if not directory.is_dir():
        raise BundleError(
            [Problem(str(directory), 1, 1, "not-a-directory", "policy directory not found")]
        )
    files = _Files(directory)
    problems = files.problems

    schema_path = directory / SCHEMA_FILE
    schema: cedarpy.Schema | None = None
    schema_text = ""
    if not schema_path.is_file():
        problems.append(
            Problem(SCHEMA_FILE, 1, 1, "missing-schema", _missing_schema_message(directory))
        )
    elif (text := files.read(schema_path)) is not None:
        schema_text = text
        schema = _parse_schema(text, problems)

    policies, scopes = _read_policies(directory, files, schema, schema_text, cache)

    entities: cedarpy.Entities | None = None
    entities_path = directory / ENTITIES_FILE
    entities_text = "[]"
    if entities_path.is_file():
        text = files.read(entities_path)
        entities_text = text if text is not None else "[]"
    if schema is not None:
        entities, _ = _parse_entities(entities_text, schema, problems)

    tests: list[TestSuite] = []
    tests_dir = directory / TESTS_DIR
    if tests_dir.is_dir():
        for path in [*visible_files(tests_dir, "*.yaml"), *visible_files(tests_dir, "*.yml")]:
            text = files.read(path)
            if text is None:
                continue
            try:
                tests.append(parse_suite(files.rel(path), text))
            except BundleError as exc:
                problems.extend(exc.problems)

    if problems or schema is None or entities is None:
        raise BundleError(problems)
    return BundleData(
        version=version or content_version(directory),
        directory=directory,
        policies=PolicyTable.of(policies),
        schema_text=schema_text,
        entities_text=entities_text,
        tests=tuple(sorted(tests, key=lambda s: s.file)),
        index=None if any(s is None for s in scopes) else ScopeIndex(scopes),  # type: ignore[arg-type]
    )


def _read_policies(
    directory: Path,
    files: _Files,
    schema: cedarpy.Schema | None,
    schema_text: str,
    cache: StatementCache,
) -> tuple[list[Policy], list[ScopeKeys | None]]:
    """Every policy of the bundle's ``*.cedar`` files, parsed and validated, and their scopes.

    Only statements ``cache`` does not know are handed to Cedar: parsed in one
    call, and validated in one call (in a thread, without the GIL, beside
    the parse). Cedar numbers the policies of one text policy0, policy1, ...
    in order, which is how its answers are matched back to statements.
    """
    problems = files.problems
    policy_paths = [p for p in visible_files(directory, "*.cedar")]
    if not policy_paths:
        problems.append(
            Problem(".", 1, 1, "empty-bundle", "no *.cedar policy files in the directory")
        )
    sources: list[tuple[str, str, list[Statement]]] = []
    for path in policy_paths:
        text = files.read(path)
        if text is not None:
            rel = files.rel(path)
            sources.append((rel, text, cache.statements(rel, text)))
    texts = [st.text for _, _, statements in sources for st in statements]
    unparsed = [t for t in dict.fromkeys(texts) if cache.parsed(t) is None]
    key = schema_key(schema_text)
    unvalidated = (
        [t for t in dict.fromkeys(texts) if cache.errors(key, t) is None]
        if schema is not None
        else []
    )
    validation = _Validation(schema, "\n".join(unvalidated))
    failures = _parse_new(unparsed, cache)

    policies: list[Policy] = []
    scopes: list[ScopeKeys | None] = []
    for rel, text, statements in sources:
        source = SourceMap(text)
        for index, statement in enumerate(statements):
            parsed = cache.parsed(statement.text)
            if parsed is None:
                problems.append(_parse_problem(rel, statement, source, failures[statement.text]))
                continue
            policies.append(_policy(rel, index, statement, parsed, source))
            scopes.append(parsed.scope)
    if policy_paths and not policies and not problems:
        problems.append(Problem(".", 1, 1, "empty-bundle", "the policy files hold no policies"))
    _check_duplicate_ids(policies, problems)

    if schema is not None and policies:
        result = validation.result()
        if any(t in failures for t in unvalidated):
            # Some did not parse, so the numbering is not theirs: validate the rest again.
            unvalidated = [t for t in unvalidated if t not in failures]
            result = _validate_texts(unvalidated, schema)
        _validation_problems(policies, key, unvalidated, result, cache, problems)
    else:
        validation.result()
    return policies, scopes


def _parse_new(texts: list[str], cache: StatementCache) -> dict[str, str | None]:
    """Parse ``texts`` into ``cache``; returns the ones that fail: text -> Cedar's message
    (``None``: a template)."""
    failures: dict[str, str | None] = {}
    whole = [t for t in texts if t.rstrip().endswith(";")]
    bodies = _parse_whole_file("\n".join(whole), len(whole)) if whole else None
    if bodies is not None:
        for text, body in zip(whole, bodies, strict=True):
            cache.remember_parsed(text, _parsed(body))
        texts = [t for t in texts if cache.parsed(t) is None]
    for text in texts:  # something is wrong: one by one, to find every error
        try:
            document = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            failures[text] = str(exc)
            continue
        static = document.get("staticPolicies") or {}
        if document.get("templates") or len(static) != 1:
            failures[text] = None
            continue
        (body,) = static.values()
        cache.remember_parsed(text, _parsed(body))
    return failures


def _parsed(body: dict[str, Any]) -> ParsedStatement:
    annotations = body.get("annotations") or {}
    try:
        scope: ScopeKeys | None = scope_keys(body)
    except (ValueError, KeyError, TypeError):
        scope = None
    return ParsedStatement(
        json_text=json.dumps(body),
        effect=body["effect"],
        annotated_id=str(annotations["id"]) if "id" in annotations else None,
        scope=scope,
    )


def _parse_problem(
    rel: str, statement: Statement, source: SourceMap, message: str | None
) -> Problem:
    if message is None:
        start = source.position(statement.start)
        return Problem(
            rel, start.line, start.column, "template", "policy templates are not supported"
        )
    offset = locate_error(statement.text, message, cedarpy.policies_to_json_str)
    pos = source.position(statement.start + offset)
    return Problem(rel, pos.line, pos.column, "syntax-error", message)


def _parse_schema(text: str, problems: list[Problem]) -> cedarpy.Schema | None:
    try:
        # Without the GIL: the serving process parses the schema of every new version.
        return cedarpy.Schema.from_str(text, release_gil=True)
    except ValueError as exc:
        message = str(exc)
        pos = SourceMap(text).position(locate_error(text, message, cedarpy.Schema.from_str))
        problems.append(Problem(SCHEMA_FILE, pos.line, pos.column, "schema-error", message))
        return None


class _Validation:
    """``cedarpy.validate_policies`` of one text in a thread of its own (GIL released)."""

    def __init__(self, schema: cedarpy.Schema | None, text: str) -> None:
        self._result: cedarpy.ValidationResult | ValueError | None = None
        self._thread: threading.Thread | None = None
        if schema is not None and text.strip():
            self._thread = threading.Thread(
                target=self._run, args=(schema, text), name="validate", daemon=True
            )
            self._thread.start()

    def _run(self, schema: cedarpy.Schema, text: str) -> None:
        try:
            self._result = cedarpy.validate_policies(text, schema, release_gil=True)
        except ValueError as exc:
            self._result = exc

    def result(self) -> cedarpy.ValidationResult | ValueError | None:
        """Waits for the validation; ``None`` if there was nothing to validate."""
        if self._thread is not None:
            self._thread.join()
        return self._result


def _validate_texts(
    texts: list[str], schema: cedarpy.Schema
) -> cedarpy.ValidationResult | ValueError | None:
    if not texts:
        return None
    try:
        return cedarpy.validate_policies("\n".join(texts), schema)
    except ValueError as exc:
        return exc


def _parse_whole_file(text: str, count: int) -> list[dict[str, Any]] | None:
    """The policies of ``text`` in order when it parses in one go into ``count`` static policies."""
    try:
        document = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError:
        return None
    static = document.get("staticPolicies") or {}
    if document.get("templates") or len(static) != count:
        return None
    numbered = {int(key[6:]): body for key, body in static.items() if key[6:].isdigit()}
    if sorted(numbered) != list(range(count)):
        return None
    return [numbered[i] for i in range(count)]


def _policy(
    rel: str, index: int, statement: Statement, parsed: ParsedStatement, source: SourceMap
) -> Policy:
    start = source.position(statement.start)
    return Policy(
        id=parsed.annotated_id if parsed.annotated_id is not None else f"{rel}#{index}",
        file=rel,
        line=start.line,
        column=start.column,
        text=statement.text,
        effect=parsed.effect,
        json_text=parsed.json_text,
    )


def _check_duplicate_ids(policies: list[Policy], problems: list[Problem]) -> None:
    seen: dict[str, Policy] = {}
    for policy in policies:
        if not policy.id.strip():
            problems.append(
                Problem(policy.file, policy.line, policy.column, "bad-id", "@id is empty")
            )
            continue
        first = seen.setdefault(policy.id, policy)
        if first is not policy:
            problems.append(
                Problem(
                    policy.file,
                    policy.line,
                    policy.column,
                    "duplicate-id",
                    f"policy id {policy.id!r} is already used at "
                    f"{first.file}:{first.line}:{first.column}",
                )
            )


def _validation_problems(
    policies: list[Policy],
    key: str,
    validated: list[str],
    result: cedarpy.ValidationResult | ValueError | None,
    cache: StatementCache,
    problems: list[Problem],
) -> None:
    """Schema problems of ``policies``.

    ``result`` is Cedar's validation of ``validated`` (joined in that order:
    the statements ``cache`` had no errors for under the schema ``key``); the
    others' errors come from ``cache``.
    """
    if isinstance(result, ValueError):
        problems.append(Problem(".", 1, 1, "validation-failed", str(result)))
        return
    if result is not None:
        found: dict[str, list[str]] = {text: [] for text in validated}
        unplaced = False
        for error in result.errors:
            generated = error.policy_id
            number = int(generated[6:]) if re.fullmatch(r"policy\d+", generated) else -1
            if not 0 <= number < len(validated):
                problems.append(Problem(".", 1, 1, "schema-violation", error.error))
                unplaced = True
                continue
            found[validated[number]].append(error.error)
        if unplaced:  # not one statement's own: nothing of this validation is kept
            _statement_problems(policies, lambda text: found.get(text, ()), problems)
            return
        for text, errors in found.items():
            cache.remember_errors(key, text, tuple(errors))
    _statement_problems(policies, lambda text: cache.errors(key, text) or (), problems)


def _statement_problems(
    policies: list[Policy],
    errors_of: Callable[[str], Sequence[str]],
    problems: list[Problem],
) -> None:
    for policy in policies:
        for error in errors_of(policy.text):
            message = _GENERATED_ID.sub(f"`{policy.id}`", error)
            offset = locate_error(
                policy.text, message, cedarpy.policies_to_json_str, skip=(policy.id, "context")
            )
            pos = _offset_position(policy, offset)
            problems.append(Problem(policy.file, pos[0], pos[1], "schema-violation", message))


def _offset_position(policy: Policy, offset: int) -> tuple[int, int]:
    before = policy.text[:offset]
    newlines = before.count("\n")
    if newlines == 0:
        return policy.line, policy.column + offset
    return policy.line + newlines, offset - before.rfind("\n")


def _parse_entities(
    text: str, schema: cedarpy.Schema, problems: list[Problem]
) -> tuple[cedarpy.Entities | None, list[Mapping[str, Any]]]:
    source = SourceMap(text)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Problem(ENTITIES_FILE, exc.lineno, exc.colno, "bad-json", exc.msg))
        return None, []
    if not isinstance(records, list):
        problems.append(Problem(ENTITIES_FILE, 1, 1, "bad-entities", "expected a JSON array"))
        return None, []
    try:
        entities = cedarpy.Entities.from_json_str(text, schema, release_gil=True)
    except ValueError as exc:
        before = len(problems)
        for offset, record in _array_items(text):
            try:
                cedarpy.Entities.from_json_str(json.dumps([record]), schema)
            except ValueError as item_exc:
                pos = source.position(offset)
                uid = record.get("uid") if isinstance(record, dict) else None
                problems.append(
                    Problem(
                        ENTITIES_FILE,
                        pos.line,
                        pos.column,
                        "bad-entity",
                        f"entity {json.dumps(uid)} does not conform to the schema: {item_exc}",
                    )
                )
        if len(problems) == before:
            problems.append(Problem(ENTITIES_FILE, 1, 1, "bad-entities", str(exc)))
        return None, []
    # The handle includes the schema's action entities; keep the rendered records.
    return entities, json.loads(str(entities))


def _array_items(text: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return
        value, end = decoder.raw_decode(text, index)
        yield index, value
        index = end
