"""``meshward policy replay`` on a log written by the real writer, against Git revisions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.observe.decisionlog import DecisionLog, RotatingFileSink
from tests.support.cli import REPO, meshward
from tests.support.gitrepo import PolicyRepo
from tests.support.policyfiles import SYNTAX_ERROR, TIGHTEN_ORDERS_READS_CATALOG, example_files
from tests.support.records import record_for

NS = "spiffe://meshward.local/ns/shop/sa/"
WHEN = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _request(caller: str, method: str, target: str, path: str) -> AccessRequest:
    return AccessRequest(
        Identity(EntityUid("Workload", NS + caller)),
        EntityUid("Action", method),
        EntityUid("Service", NS + target),
        {
            "http": {
                "method": method,
                "host": target,
                "path": path,
                "query": "",
                "headers": {"cookie": "session=secret", "x-request-id": "r"},
            },
            "peer": {"spiffe_id": NS + caller, "trust_domain": "meshward.local"},
        },
    )


# (caller, method, target, path, changed by TIGHTEN_ORDERS_READS_CATALOG?)
TRAFFIC = [
    ("orders", "GET", "catalog", "/products/1", False),
    ("orders", "GET", "catalog", "/products", False),
    ("orders", "GET", "catalog", "/stock/7", True),
    ("orders", "HEAD", "catalog", "/prices", True),
    ("orders", "GET", "catalog", "/stock/8", True),
    ("orders", "POST", "catalog", "/products", False),  # denied before and after
    ("frontend", "GET", "catalog", "/stock/7", False),
    ("frontend", "POST", "orders", "/api/orders", False),
    ("orders", "POST", "payments", "/v1/charges", False),
    ("frontend", "DELETE", "catalog", "/products/1", False),
]


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, set[str]]:
    """A decision log of TRAFFIC decided by the example policies, and the ids that change."""
    engine = Engine(load_bundle(REPO / "policies", version="v-example"))
    path = tmp_path / "decisions.jsonl"
    changed = set()
    with DecisionLog(RotatingFileSink(path)) as dlog:
        for n, (caller, method, target, route, changes) in enumerate(TRAFFIC * 3):
            request = _request(caller, method, target, route)
            decision = engine.evaluate(request)
            dlog.record(record_for(request, decision, f"d{n}", time=WHEN))
            if changes:
                changed.add(f"d{n}")
    return path, changed


@pytest.fixture
def repo(tmp_path: Path) -> PolicyRepo:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({f"policies/{k}": v for k, v in example_files().items()}, "example")
    return repo


def test_replay_finds_exactly_the_decisions_a_tightened_rule_changes(
    logged: tuple[Path, set[str]], repo: PolicyRepo
) -> None:
    log, expected = logged
    sha = repo.commit(
        {f"policies/{k}": v for k, v in TIGHTEN_ORDERS_READS_CATALOG.items()}, "tighten"
    )
    args = ("policy", "replay", "--log", str(log), "--repo", str(repo.work), "--format", "json")
    done = meshward(*args, "--policies", "HEAD:policies", "--examples", "100")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["replayed"] == len(TRAFFIC) * 3
    assert report["changed"] == len(expected) == 9
    assert {e["decision_id"] for e in report["examples"]} == expected
    assert report["by_principal"] == {f'Workload::"{NS}orders"': 9}
    assert report["by_transition"] == {"allow->deny": 9}
    assert report["by_resource"] == {f'Service::"{NS}catalog"': 9}
    assert report["by_action"] == {'Action::"GET"': 6, 'Action::"HEAD"': 3}
    assert report["with_redacted"] == len(TRAFFIC) * 3  # the cookie header
    assert report["candidate_version"] == sha

    allowed = meshward(*args, "--policies", "HEAD:policies", "--allow-changes")
    assert allowed.returncode == 0
    text = meshward(*args[:-2], "--policies", "HEAD:policies")
    assert text.returncode == 1
    assert "9 changed" in text.stdout


@pytest.mark.parametrize("policies", ["HEAD~1:policies", str(REPO / "policies")])
def test_replay_against_the_logged_policies_changes_nothing(
    logged: tuple[Path, set[str]], repo: PolicyRepo, policies: str
) -> None:
    log, _ = logged
    repo.commit({f"policies/{k}": v for k, v in TIGHTEN_ORDERS_READS_CATALOG.items()})
    done = meshward(
        "policy", "replay", "--log", str(log), "--policies", policies, "--repo", str(repo.work)
    )
    assert done.returncode == 0, done.stderr
    assert "0 changed" in done.stdout


def test_bad_lines_are_counted_not_fatal(logged: tuple[Path, set[str]], tmp_path: Path) -> None:
    log, _ = logged
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('not json\n{"decision": "allow"}\n\n' + log.read_text())
    done = meshward(
        "policy", "replay", "--log", str(mixed), "--policies", str(REPO / "policies"),
        "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert [b["line"] for b in report["bad_lines"]] == [1, 2]
    assert report["replayed"] == len(TRAFFIC) * 3


def test_unreadable_inputs_exit_2(
    logged: tuple[Path, set[str]], repo: PolicyRepo, tmp_path: Path
) -> None:
    log, _ = logged
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("nope\n")
    broken = repo.commit({f"policies/{k}": v for k, v in SYNTAX_ERROR.items()})
    cases = [
        ("--log", str(tmp_path / "missing.jsonl"), "--policies", str(REPO / "policies")),
        ("--log", str(garbage), "--policies", str(REPO / "policies")),
        ("--log", str(log), "--policies", "no-such-revision"),
        ("--log", str(log), "--policies", "--upload-pack=evil"),
        ("--log", str(log), "--policies", f"{broken}:policies"),
        ("--log", str(log), "--policies", "https://example.test/policies.git"),
    ]
    for case in cases:
        done = meshward("policy", "replay", *case, "--repo", str(repo.work))
        assert done.returncode == 2, (case, done.stdout, done.stderr)
