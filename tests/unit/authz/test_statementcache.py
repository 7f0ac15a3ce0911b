"""A check that reuses earlier checks' work gives exactly what a check from nothing gives.

Hypothesis draws a series of bundle versions — policy files made of valid
statements, statements that break the schema, syntax errors, templates,
duplicate ids, an unterminated last statement — and flips the schema between
two that disagree about some policies. Each version is read twice: with the
cache the earlier versions filled, and from nothing. Both must reject it with
the same problems, or accept it with the same policies (id, place, text, JSON
form) and the same scope index.
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.engine.bundle import BundleData, bundle_from_data, read_bundle
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.engine.slicing import ScopeIndex
from authz.engine.statementcache import StatementCache
from authz.errors import BundleError
from tests.unit.authz.conftest import write_tree

SCHEMA_A = """
entity Group;
entity Workload in [Group] { team?: String };
entity Service;
action "GET" appliesTo { principal: [Workload], resource: [Service], context: { path: String } };
"""
# B drops Workload's team attribute and the context's path: policies reading them break.
SCHEMA_B = """
entity Group;
entity Workload in [Group];
entity Service;
action "GET" appliesTo { principal: [Workload], resource: [Service], context: {} };
"""

STATEMENTS = [
    'permit (principal == Workload::"w1", action == Action::"GET", resource);',
    '@id("named")\npermit (principal in Group::"g", action, resource == Service::"s");',
    '@id("named")\nforbid (principal, action, resource) when { principal has team };',
    'forbid (principal, action, resource) when { context.path like "/x*" };',  # A only
    'permit (principal, action, resource) when { principal.team == "a" };',  # needs `has`
    "permit (principal, action, resource) when { context.nope == 1 };",  # never valid
    'permit (principal is Workload, action, resource is Service in Service::"s");',
    "permit (principal, action, resource) when { 1 + };",  # syntax error
    "permit (principal == ?principal, action, resource);",  # a template
    '// a comment; with a semicolon\npermit (principal, action == Action::"GET", resource);',
    "permit (principal, action, resource)",  # no ";": only valid as the last statement
]

files = st.dictionaries(
    st.sampled_from(["a.cedar", "b.cedar", "sub/c.cedar"]),
    st.lists(st.sampled_from(STATEMENTS), min_size=0, max_size=5),
    min_size=1,
    max_size=3,
)
versions = st.lists(st.tuples(st.sampled_from([SCHEMA_A, SCHEMA_B]), files), min_size=2, max_size=4)


def _tree(root: Path, schema: str, policy_files: dict[str, list[str]]) -> Path:
    for old in root.rglob("*.cedar"):
        old.unlink()
    contents: dict[str, str | bytes | None] = {"schema.cedarschema": schema}
    for name, statements in policy_files.items():
        contents[name] = "\n\n".join(statements) + "\n"
    return write_tree(root, contents)


def _outcome(root: Path, cache: StatementCache | None) -> BundleData | BundleError:
    try:
        return read_bundle(root, version="v", cache=cache)
    except BundleError as exc:
        return exc


def _assert_same(warm: BundleData | BundleError, cold: BundleData | BundleError) -> None:
    if isinstance(cold, BundleError):
        assert isinstance(warm, BundleError)
        assert warm.problems == cold.problems
        return
    assert isinstance(warm, BundleData)
    assert list(warm.policies) == list(cold.policies)
    assert [p.json for p in warm.policies] == [p.json for p in cold.policies]
    assert warm.index is not None and cold.index is not None
    assert warm.index == cold.index
    assert warm.index == ScopeIndex.of_policies(p.json for p in cold.policies)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(versions)
def test_a_warm_check_equals_a_check_from_nothing(
    series: list[tuple[str, dict[str, list[str]]]],
) -> None:
    cache = StatementCache()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for schema, policy_files in series:
            _tree(root, schema, policy_files)
            warm = _outcome(root, cache)
            cold = _outcome(root, None)
            _assert_same(warm, cold)


def test_a_changed_schema_validates_every_statement_again(tmp_path: Path) -> None:
    policies = {"p.cedar": [STATEMENTS[3], STATEMENTS[0]]}
    cache = StatementCache()
    assert isinstance(_outcome(_tree(tmp_path, SCHEMA_A, policies), cache), BundleData)
    # The same statements, a schema without context.path: cached as valid under A,
    # they are not valid under B.
    rejected = _outcome(_tree(tmp_path, SCHEMA_B, policies), cache)
    assert isinstance(rejected, BundleError)
    assert [(p.file, p.line, p.code) for p in rejected.problems] == [
        ("p.cedar", 1, "schema-violation")
    ]
    # And back: A's results are still right for A.
    assert isinstance(_outcome(_tree(tmp_path, SCHEMA_A, policies), cache), BundleData)


def test_a_statement_moved_to_another_file_gets_its_new_place_and_id(tmp_path: Path) -> None:
    cache = StatementCache()
    first = _outcome(_tree(tmp_path, SCHEMA_A, {"a.cedar": [STATEMENTS[0]]}), cache)
    moved = _outcome(_tree(tmp_path, SCHEMA_A, {"b.cedar": [STATEMENTS[6], STATEMENTS[0]]}), cache)
    assert isinstance(first, BundleData) and isinstance(moved, BundleData)
    assert [(p.id, p.file, p.line) for p in first.policies] == [("a.cedar#0", "a.cedar", 1)]
    assert [(p.id, p.file, p.line) for p in moved.policies] == [
        ("b.cedar#0", "b.cedar", 1),
        ("b.cedar#1", "b.cedar", 3),
    ]


def test_the_cache_keeps_what_the_last_two_checks_used(tmp_path: Path) -> None:
    cache = StatementCache(generations=2)
    for statement in STATEMENTS[:3]:
        _outcome(_tree(tmp_path, SCHEMA_A, {"a.cedar": [statement]}), cache)
    # Per check: one parse and one validation, and a.cedar's last text and
    # statements; the first check's are gone.
    assert len(cache) == 5
    assert cache.parsed(STATEMENTS[0]) is None
    assert cache.parsed(STATEMENTS[1]) is not None
    assert cache.parsed(STATEMENTS[2]) is not None


def test_a_failed_statement_is_not_remembered(tmp_path: Path) -> None:
    cache = StatementCache()
    _outcome(_tree(tmp_path, SCHEMA_A, {"a.cedar": [STATEMENTS[7], STATEMENTS[0]]}), cache)
    assert cache.parsed(STATEMENTS[7]) is None
    assert cache.parsed(STATEMENTS[0]) is not None


def test_generations_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StatementCache(generations=0)


def test_what_crosses_processes_decides_as_what_was_checked(tmp_path: Path) -> None:
    policies = {"a.cedar": [STATEMENTS[0], STATEMENTS[1], STATEMENTS[6]], "b.cedar": STATEMENTS[:1]}
    data = read_bundle(_tree(tmp_path, SCHEMA_A, policies), version="v")
    wire = pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    assert wire == data
    assert wire.index == data.index
    assert list(wire.policies) == list(data.policies)
    assert [p.json_text for p in wire.policies] == [p.json_text for p in data.policies]
    here, there = Engine(bundle_from_data(data)), Engine(bundle_from_data(wire))
    for principal in ("w1", "w2"):
        request = AccessRequest(
            Identity(EntityUid("Workload", principal), (EntityUid("Group", "g"),)),
            EntityUid("Action", "GET"),
            EntityUid("Service", "s"),
            {},
        )
        assert here.evaluate(request) == there.evaluate(request)
        assert here.candidates(request) == there.candidates(request)
    assert dict(there.policy_reads) == dict(here.policy_reads)
