from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.engine.model import AccessRequest, Decision, Effect, EntityUid, Identity
from authz.lifecycle.replay import (
    BadLine,
    LoggedDecision,
    NotReplayable,
    parse_entry,
    read_log,
    replay,
)
from authz.observe.decisionlog import decision_entry
from tests.support.records import record_for

WHEN = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | ids
contexts = st.dictionaries(
    st.sampled_from(["http", "peer", "grpc", "x"]),
    st.dictionaries(st.sampled_from(["method", "path", "headers", "n"]), scalars, max_size=4),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(
    principal=ids,
    parents=st.lists(ids, max_size=3),
    resource=ids,
    context=contexts,
    effect=st.sampled_from(list(Effect)),
)
def test_a_logged_decision_parses_back_to_its_request(
    principal: str, parents: list[str], resource: str, context: dict[str, object], effect: Effect
) -> None:
    request = AccessRequest(
        Identity(EntityUid("User", principal), tuple(EntityUid("Group", p) for p in parents)),
        EntityUid("Action", "GET"),
        EntityUid("Service", resource),
        context,
    )
    event = record_for(request, Decision(effect, policy_version="v1"), "d1")
    line = json.dumps(decision_entry(event, redact=()))
    back = parse_entry(json.loads(line), 7)
    assert back.request == request
    assert back.effect is effect
    assert (back.line, back.decision_id, back.policy_version) == (7, "d1", "v1")


@pytest.mark.parametrize(
    "line",
    [
        "[]",
        '{"decision": "allow"}',
        '{"principal": "nope", "action": "Action::\\"GET\\"", "resource": "S::\\"x\\""}',
        '{"principal": "U::\\"a\\"", "action": "Action::\\"GET\\"", "resource": "S::\\"x\\"",'
        ' "decision": "maybe"}',
        '{"principal": "U::\\"a\\"", "action": "Action::\\"GET\\"", "resource": "S::\\"x\\"",'
        ' "decision": "allow", "context": []}',
        "{truncated",
    ],
)
def test_malformed_lines_are_bad_lines(line: str) -> None:
    (item,) = read_log([line])
    assert isinstance(item, BadLine) and item.line == 1


def test_unreplayable_entries_are_recognised() -> None:
    (item,) = read_log(['{"replayable": false, "decision": "deny", "principal": ""}'])
    assert item == NotReplayable(1)


def test_report_counts_and_limits_examples() -> None:
    def entry(n: int, effect: Effect) -> LoggedDecision:
        request = AccessRequest(
            Identity(EntityUid("User", f"u{n % 2}")),
            EntityUid("Action", "GET"),
            EntityUid("Service", "s"),
        )
        return LoggedDecision(n, f"d{n}", "v", request, effect, ())

    logged: list[LoggedDecision | BadLine | NotReplayable] = [
        entry(n, Effect.ALLOW) for n in range(6)
    ]
    logged += [BadLine(99, "x"), NotReplayable(100)]

    def evaluate(request: AccessRequest) -> Decision:
        return Decision(Effect.DENY if request.principal.id == "u1" else Effect.ALLOW)

    report = replay(logged, evaluate, candidate_version="c", examples=2)
    assert (report.replayed, report.changed, report.not_replayable) == (6, 3, 1)
    assert dict(report.by_principal) == {'User::"u1"': 3}
    assert [c.logged.decision_id for c in report.examples] == ["d1", "d3"]
    assert report.to_json()["bad_lines"] == [{"line": 99, "error": "x"}]
    assert "3 changed" in report.to_text()
