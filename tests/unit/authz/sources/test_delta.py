"""An answer sent as a delta against the held version builds exactly what a full answer builds.

Hypothesis draws a series of changes to a bundle of a few hundred policies
(several blocks of policies, several index shards): policies added, edited
(condition or scope), removed, moved to another file, the schema changed, a
version that fails the check in between, and the checking child restarted
(its statement cache gone). Each version is checked as the child checks it
and sent as a delta against the pieces of the last bundle built from an
answer; the bundle and the engine built from it must equal a check from
nothing — same policies, same index, same decisions — and the version it
was built beside must be left as it was.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.engine.bundle import BundleData, bundle_from_data, read_bundle
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.engine.pieces import Piece
from authz.engine.policytable import BLOCK_SIZE
from authz.engine.statementcache import StatementCache
from authz.errors import BundleError, PrepareBaseMismatch
from authz.sources import delta
from authz.sources.bundles import Checked, check_bundle
from tests.unit.authz.conftest import write_tree

SCHEMA_A = """
entity Group;
entity Workload in [Group] { team?: String };
entity Service;
action "GET", "POST" appliesTo {
  principal: [Workload], resource: [Service], context: { path: String }
};
"""
# B drops the team attribute: a policy reading it no longer validates.
SCHEMA_B = """
entity Group;
entity Workload in [Group];
entity Service;
action "GET", "POST" appliesTo {
  principal: [Workload], resource: [Service], context: { path: String }
};
"""
FILES = ("a.cedar", "sub/b.cedar")
WORKLOADS = 161  # more than one shard of principal keys
SERVICES = 6
ASKED = range(0, WORKLOADS, 7)  # the workloads the requests name


@dataclass(frozen=True)
class Rule:
    effect: str
    principal: int  # a workload; -1: anyone in the group
    action: str
    service: int
    condition: int  # 0: none; 1: a path prefix; 2: reads the team attribute

    def text(self, ident: int) -> str:
        principal = (
            'principal in Group::"g"'
            if self.principal < 0
            else f'principal == Workload::"w{self.principal}"'
        )
        when = (
            ""
            if self.condition == 0
            else ' when { context.path like "/a*" }'
            if self.condition == 1
            else ' when { principal has team && principal.team == "x" }'
        )
        return (
            f'@id("r{ident}")\n{self.effect} ({principal}, action == Action::"{self.action}",'
            f' resource == Service::"s{self.service}"){when};'
        )


rules = st.builds(
    Rule,
    st.sampled_from(["permit", "permit", "forbid"]),
    st.one_of(st.just(-1), st.sampled_from(ASKED), st.integers(0, WORKLOADS - 1)),
    st.sampled_from(["GET", "POST"]),
    st.integers(0, SERVICES - 1),
    st.integers(0, 2),
)
changes = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 10_000), rules),
        st.tuples(st.just("edit"), st.integers(0, 10_000), rules),
        st.tuples(st.just("recondition"), st.integers(0, 10_000), st.integers(0, 2)),
        st.tuples(st.just("remove"), st.integers(0, 10_000)),
        st.tuples(st.just("move"), st.integers(0, 10_000)),
        st.tuples(st.just("schema")),
        st.tuples(st.just("reject")),
        st.tuples(st.just("restart")),
    ),
    min_size=1,
    max_size=6,
)


class Bundle:
    """A policy repository as rules in files, written out as a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.schema = SCHEMA_A
        self.next_id = 0
        self.rules: list[tuple[str, int, Rule]] = []
        for i in range(200):  # four blocks of policies
            principal = ASKED[i % len(ASKED)] if i % 4 else i % WORKLOADS
            self.add(i, Rule("permit", principal, "GET", i % SERVICES, i % 3))

    def add(self, at: int, rule: Rule) -> None:
        file = FILES[at % len(FILES)]
        self.rules.insert(at % (len(self.rules) + 1), (file, self.next_id, rule))
        self.next_id += 1

    def write(self, broken: bool = False) -> Path:
        texts: dict[str, list[str]] = {name: [] for name in FILES}
        for file, ident, rule in self.rules:
            texts[file].append(rule.text(ident))
        if broken:
            texts[FILES[0]].append("permit (principal, action, resource) when { 1 + };")
        contents: dict[str, str | bytes | None] = {"schema.cedarschema": self.schema}
        contents.update({name: "\n\n".join(body) + "\n" for name, body in texts.items()})
        return write_tree(self.root, contents)

    def apply(self, change: tuple[object, ...]) -> None:
        kind = change[0]
        if kind == "add":
            self.add(int(change[1]), change[2])  # type: ignore[arg-type, call-overload]
        elif kind == "edit" and self.rules:
            at = int(change[1]) % len(self.rules)  # type: ignore[call-overload]
            file, ident, _ = self.rules[at]
            self.rules[at] = (file, ident, change[2])  # type: ignore[assignment]
        elif kind == "recondition" and self.rules:  # the same scope: the same slices
            at = int(change[1]) % len(self.rules)  # type: ignore[call-overload]
            file, ident, rule = self.rules[at]
            new = Rule(rule.effect, rule.principal, rule.action, rule.service, int(change[2]))  # type: ignore[call-overload]
            self.rules[at] = (file, ident, new)
        elif kind == "remove" and len(self.rules) > 1:
            del self.rules[int(change[1]) % len(self.rules)]  # type: ignore[call-overload]
        elif kind == "move" and self.rules:
            at = int(change[1]) % len(self.rules)  # type: ignore[call-overload]
            file, ident, rule = self.rules.pop(at)
            self.rules.append((FILES[1] if file == FILES[0] else FILES[0], ident, rule))
        elif kind == "schema":
            self.schema = SCHEMA_B if self.schema == SCHEMA_A else SCHEMA_A


REQUESTS = [
    AccessRequest(
        Identity(EntityUid("Workload", f"w{w}"), (EntityUid("Group", "g"),) if w % 2 else ()),
        EntityUid("Action", action),
        EntityUid("Service", f"s{s}"),
        {"path": path},
    )
    for w in ASKED
    for action in ("GET", "POST")
    for s in (w % SERVICES, (w + 1) % SERVICES)
    for path in ("/a/x", "/b")
]


class Serving:
    """What the serving process holds: the pieces of the last bundle it built."""

    def __init__(self) -> None:
        self.held: dict[bytes, Piece] = {}

    def receive(self, checked: Checked) -> tuple[Checked, int]:
        wire = delta.dumps(("ok", checked), frozenset(self.held))
        kind, answer = delta.loads(wire, self.held)
        assert kind == "ok" and isinstance(answer, Checked)
        if answer.data is not None:
            self.held = delta.pieces_of(answer.data)
        return answer, len(wire)


def _full(root: Path, version: str) -> BundleData | BundleError:
    try:
        return read_bundle(root, version=version)
    except BundleError as exc:
        return exc


def _decisions(engine: Engine) -> list[object]:
    return [(engine.evaluate(r), engine.candidates(r)) for r in REQUESTS]


def _assert_built_as_from_nothing(
    answer: Checked, full: BundleData | BundleError, previous: Engine
) -> None:
    if isinstance(full, BundleError):
        assert answer.data is None and answer.stage == "bundle"
        assert answer.problems == tuple(full.problems)
        return
    assert answer.data is not None
    assert answer.data == full
    assert list(answer.data.policies) == list(full.policies)
    assert answer.data.policies.ids == full.policies.ids
    here = Engine(bundle_from_data(answer.data))
    there = Engine(bundle_from_data(full))
    assert _decisions(here) == _decisions(there)
    assert dict(here.policy_reads) == dict(there.policy_reads)
    # Taking over the slices of the engine it replaces changes no decision.
    taking_over = Engine(bundle_from_data(answer.data), previous=previous)
    assert _decisions(taking_over) == _decisions(there)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes)
def test_a_delta_builds_what_a_full_answer_builds(series: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Bundle(Path(tmp) / "bundle")
        cache = StatementCache()  # the child's, for its life
        serving = Serving()
        first, _ = serving.receive(check_bundle(bundle.write(), "v0", cache))
        assert first.data is not None
        active = first.data
        frozen = pickle.dumps(active)
        engine = Engine(bundle_from_data(active))
        active_decisions = _decisions(engine)  # and its slices built
        for number, change in enumerate(series, 1):
            if change[0] == "restart":
                cache = StatementCache()
                continue
            bundle.apply(change)
            version = f"v{number}"
            root = bundle.write(broken=change[0] == "reject")
            answer, _ = serving.receive(check_bundle(root, version, cache))
            _assert_built_as_from_nothing(answer, _full(root, version), engine)
            # Built beside the active version, which is left exactly as it was.
            assert pickle.dumps(active) == frozen
            assert _decisions(Engine(bundle_from_data(active))) == active_decisions
            if answer.data is not None:
                active, frozen = answer.data, pickle.dumps(answer.data)
                engine = Engine(bundle_from_data(active), previous=engine)
                active_decisions = _decisions(engine)


def test_a_one_policy_edit_sends_one_block(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "bundle")
    cache = StatementCache()
    serving = Serving()
    _, full_size = serving.receive(check_bundle(bundle.write(), "v0", cache))
    bundle.apply(("recondition", 5, 1))  # the same scope: the same index shards
    answer, size = serving.receive(check_bundle(bundle.write(), "v1", cache))
    assert answer.data is not None
    assert size < full_size / 3
    # A restarted child (nothing cached) names the same pieces.
    bundle.apply(("recondition", 6, 1))
    again, restarted = serving.receive(check_bundle(bundle.write(), "v2", StatementCache()))
    assert again.data is not None and restarted < full_size / 3
    assert again.data == read_bundle(bundle.root, version="v2")


def test_an_unchanged_piece_is_the_held_one_itself(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "bundle")
    cache = StatementCache()
    serving = Serving()
    first, _ = serving.receive(check_bundle(bundle.write(), "v0", cache))
    bundle.apply(("edit", 0, Rule("permit", 0, "GET", 0, 2)))
    second, _ = serving.receive(check_bundle(bundle.write(), "v1", cache))
    assert first.data is not None and second.data is not None
    old, new = first.data.policies.blocks, second.data.policies.blocks
    assert old[0] is not new[0]  # the edited block came anew
    assert all(a is b for a, b in zip(old[1:], new[1:], strict=True))
    assert first.data.index is not None and second.data.index is not None
    assert all(
        a is b for a, b in zip(first.data.index.shards, second.data.index.shards, strict=True)
    )


def test_a_digest_the_serving_side_does_not_hold_is_a_base_mismatch(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "bundle")
    data = read_bundle(bundle.write(), version="v0")
    held = delta.pieces_of(data)
    wire = delta.dumps(data, frozenset(held))
    assert delta.loads(wire, held) == data
    with pytest.raises(PrepareBaseMismatch):
        delta.loads(wire, {})
    forgotten = dict(held)
    forgotten.pop(next(iter(forgotten)))
    with pytest.raises(PrepareBaseMismatch):
        delta.loads(wire, forgotten)
    assert delta.loads(delta.dumps(data, ()), {}) == data  # a full answer needs nothing


def test_a_new_engine_takes_over_the_slices_of_unchanged_blocks_only(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "bundle")
    cache = StatementCache()
    serving = Serving()
    first, _ = serving.receive(check_bundle(bundle.write(), "v0", cache))
    assert first.data is not None
    old = Engine(bundle_from_data(first.data))
    _decisions(old)  # builds its slices
    bundle.apply(("edit", 0, Rule("permit", 0, "GET", 0, 2)))  # in the first block
    second, _ = serving.receive(check_bundle(bundle.write(), "v1", cache))
    assert second.data is not None
    new = Engine(bundle_from_data(second.data), previous=old)
    taken = set(new._slices)
    assert taken and taken < set(old._slices)
    assert all(min(positions) >= BLOCK_SIZE for positions in taken)
    assert all(new._slices[p] is old._slices[p] for p in taken)
    fresh = Engine(bundle_from_data(read_bundle(bundle.root, version="v1")))
    assert _decisions(new) == _decisions(fresh)
    old.dispose()  # retiring the old engine leaves the new one whole
    assert _decisions(new) == _decisions(fresh)
