from __future__ import annotations

import datetime as dt
import io
import json
import random
from pathlib import Path

import pytest

from authz.engine.decider import DecisionRecord, Outcome
from authz.engine.model import AccessRequest, Decision, Effect, EntityUid, Identity
from authz.observe.decisionlog import (
    DecisionLog,
    RotatingFileSink,
    StreamSink,
    decision_entry,
)
from tests.support.records import record_for

WHEN = dt.datetime(2026, 3, 1, 12, 0, 5, tzinfo=dt.UTC)


def _event(n: int = 0, headers: dict[str, str] | None = None) -> DecisionRecord:
    identity = Identity(
        EntityUid("User", "https://idp.test|alice"),
        parents=(EntityUid("Group", "admins"),),
        attributes={"email": "alice@example.test"},
    )
    request = AccessRequest(
        identity,
        EntityUid("Action", "GET"),
        EntityUid("Service", "spiffe://meshward.local/api"),
        {
            "http": {
                "method": "GET",
                "host": "api.local",
                "path": f"/items/{n}",
                "headers": headers or {"Authorization": "Bearer abc.def", "x-trace": "t1"},
            }
        },
    )
    decision = Decision(Effect.ALLOW, ("policy0",), (), "abc123")
    return record_for(request, decision, f"d-{n}", time=WHEN, latency=0.00125, tier="local")


def test_entry_has_every_field_and_redacts() -> None:
    entry = decision_entry(_event(headers={"Authorization": "Bearer x", "Cookie": "s=1", "a": "b"}))
    assert entry["time"] == "2026-03-01T12:00:05.000Z"
    assert entry["decision_id"] == "d-0"
    assert entry["policy_version"] == "abc123"
    assert entry["principal"] == 'User::"https://idp.test|alice"'
    assert entry["principal_parents"] == ['Group::"admins"']
    assert entry["action"] == 'Action::"GET"'
    assert entry["resource"] == 'Service::"spiffe://meshward.local/api"'
    assert entry["decision"] == "allow"
    assert entry["reasons"] == ["policy0"]
    assert entry["errors"] == []
    assert entry["latency_ms"] == 1.25
    assert entry["cache"] == "local"
    assert entry["outcome"] == "allow"
    assert entry["adapter"] == "grpc"
    assert entry["replayable"] is True
    assert entry["request"] == {"method": "GET", "host": "api.local", "path": "/items/0"}
    headers = entry["context"]["http"]["headers"]
    assert headers == {"Authorization": "[redacted]", "Cookie": "[redacted]", "a": "[redacted]"}
    assert sorted(entry["redacted"]) == [
        "context.http.headers.Authorization",
        "context.http.headers.Cookie",
        "context.http.headers.a",
    ]
    assert "Bearer" not in json.dumps(entry)


def _with_http(**http: object) -> DecisionRecord:
    event = _event()
    assert event.request is not None
    request = AccessRequest(
        event.request.identity,
        event.request.action,
        event.request.resource,
        {"http": {"method": "GET", "host": "h", "path": "/p", **http}},
    )
    return record_for(request, Decision(Effect.ALLOW), "q")


def test_only_allow_listed_headers_keep_their_values() -> None:
    record = _with_http(
        headers={"User-Agent": "curl", "x-request-id": "r1", "x-api-secret": "s3cr3t"}
    )
    entry = decision_entry(record)
    assert entry["context"]["http"]["headers"] == {
        "User-Agent": "curl",
        "x-request-id": "r1",
        "x-api-secret": "[redacted]",
    }
    assert "s3cr3t" not in json.dumps(entry)
    wider = decision_entry(record, headers=["x-api-secret"])
    assert wider["context"]["http"]["headers"]["x-api-secret"] == "s3cr3t"
    # A header named on the redaction list is redacted even when allow-listed.
    assert (
        decision_entry(record, redact=["x-request-id"])["context"]["http"]["headers"][
            "x-request-id"
        ]
        == "[redacted]"
    )


def test_query_values_are_redacted_names_kept() -> None:
    record = _with_http(query="access_token=eyJhbGci.x.y&page=2&flag&q=a%3Db")
    entry = decision_entry(record)
    assert entry["context"]["http"]["query"] == (
        "access_token=[redacted]&page=[redacted]&flag&q=[redacted]"
    )
    assert "context.http.query" in entry["redacted"]
    assert "eyJhbGci" not in json.dumps(entry)


def test_query_values_kept_on_request_except_named_parameters() -> None:
    record = _with_http(query="Access_Token=abc&page=2&My%5FKey=k")
    entry = decision_entry(record, redact=["access_token", "my_key"], query_values=True)
    assert entry["context"]["http"]["query"] == (
        "Access_Token=[redacted]&page=2&My%5FKey=[redacted]"
    )
    clean = decision_entry(_with_http(query="page=2"), query_values=True)
    assert clean["context"]["http"]["query"] == "page=2"
    assert clean["redacted"] == []


def test_custom_redaction_list_reaches_attributes_and_headers() -> None:
    event = _event(headers={"x-api-key": "k"})
    entry = decision_entry(event, redact=["X-API-KEY", "email"], headers=["x-api-key"])
    assert entry["context"]["http"]["headers"]["x-api-key"] == "[redacted]"
    assert entry["principal_attributes"]["email"] == "[redacted]"
    assert "principal_attributes.email" in entry["redacted"]


def test_lines_are_written_in_order_to_a_stream() -> None:
    out = io.StringIO()
    with DecisionLog(StreamSink(out)) as dlog:
        for n in range(50):
            assert dlog.record(_event(n))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["decision_id"] for e in lines] == [f"d-{n}" for n in range(50)]
    assert dlog.written == 50


def test_sampling_keeps_about_the_rate() -> None:
    out = io.StringIO()
    with DecisionLog(StreamSink(out), sample_rate=0.25, rng=random.Random(7)) as dlog:
        kept = sum(dlog.record(_event(n)) for n in range(2000))
    assert 400 < kept < 600
    assert len(out.getvalue().splitlines()) == kept


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_bad_sample_rate(rate: float) -> None:
    with pytest.raises(ValueError):
        DecisionLog(StreamSink(io.StringIO()), sample_rate=rate)


def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "decisions.jsonl"
    with DecisionLog(RotatingFileSink(path, max_bytes=4000, backups=2)) as dlog:
        for n in range(60):
            dlog.record(_event(n))
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2"]
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 4000
        for line in p.read_text().splitlines():
            json.loads(line)
    newest = [json.loads(x)["decision_id"] for x in path.read_text().splitlines()]
    assert newest[-1] == "d-59"


def test_a_failing_sink_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sink = RotatingFileSink(blocker / "sub" / "decisions.jsonl")  # parent is a file
    with DecisionLog(sink) as dlog:
        assert dlog.record(_event()) is True
    assert dlog.failed == 1
    assert dlog.written == 0


def test_unserialisable_context_values_still_log() -> None:
    out = io.StringIO()
    event = _event()
    assert event.request is not None
    weird = AccessRequest(
        event.request.identity,
        event.request.action,
        event.request.resource,
        {"blob": b"\x00\x01", "when": WHEN},
    )
    with DecisionLog(StreamSink(out)) as dlog:
        dlog.record(record_for(weird, Decision(Effect.DENY), "w"))
    assert json.loads(out.getvalue())["decision_id"] == "w"


def test_full_queue_drops_instead_of_blocking() -> None:
    dlog = DecisionLog(StreamSink(io.StringIO()), max_queue=3)  # not started: nothing drains
    results = [dlog.record(_event(n)) for n in range(5)]
    assert results == [True, True, True, False, False]
    assert dlog.dropped == 2
    dlog.start()
    dlog.close()
    assert dlog.written == 3


def test_a_decision_without_a_request_is_logged_as_not_replayable() -> None:
    request = AccessRequest(
        Identity(EntityUid("Workload", "spiffe://td/a")),
        EntityUid("Action", "GET"),
        EntityUid("Service", "spiffe://td/b"),
        {"http": {"method": "GET", "path": "/items/0"}},
    )
    decision = Decision.deny("authn:expired", policy_version="abc123")
    record = record_for(request, decision, built=False, outcome=Outcome.UNAUTHENTICATED)
    entry = decision_entry(record)
    assert entry["replayable"] is False
    assert entry["context"] is None
    assert entry["outcome"] == "unauthenticated"
    assert entry["decision_id"] == "d-0"
