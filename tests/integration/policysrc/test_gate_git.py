"""The gate with the real Cedar engine over a real Git repository (bare remote + pushing clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.sources.bundles import prepare_engine
from authz.sources.gate import Gate, Outcome
from authz.sources.git import GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo
from tests.support.policyfiles import (
    FAILING_TEST,
    SCHEMA_VIOLATION,
    SYNTAX_ERROR,
    example_files,
)

FRONTEND = EntityUid("Workload", "spiffe://meshward.local/ns/shop/sa/frontend")
CATALOG = EntityUid("Service", "spiffe://meshward.local/ns/shop/sa/catalog")


def _prefixed(files: dict[str, str]) -> dict[str, str | None]:
    return {f"policies/{k}": v for k, v in files.items()}


@pytest.fixture
def repo(tmp_path: Path) -> PolicyRepo:
    return PolicyRepo(tmp_path / "repo")


@pytest.fixture
def gate(repo: PolicyRepo, tmp_path: Path) -> Gate[Engine]:
    source = GitSource(repo.url, cache_dir=tmp_path / "cache", subdir="policies")
    return Gate(source, prepare_engine, clock=FixedClock(), work_dir=tmp_path / "work")


@pytest.mark.parametrize(
    ("bad", "stage", "codes"),
    [
        (SYNTAX_ERROR, "bundle", {"syntax-error"}),
        (SCHEMA_VIOLATION, "bundle", {"schema-violation"}),
        (FAILING_TEST, "test", {"test-failed"}),
    ],
    ids=["syntax", "schema", "failing-test"],
)
async def test_bad_commit_never_activates_and_the_next_good_one_does(
    repo: PolicyRepo,
    gate: Gate[Engine],
    bad: dict[str, str],
    stage: str,
    codes: set[str],
) -> None:
    good = repo.commit(_prefixed(example_files()), "the example policies")
    assert await gate.reload() is Outcome.ACTIVATED
    assert gate.status().active_version == good
    assert gate.active is not None and gate.active.engine.version == good
    request = AccessRequest(Identity(FRONTEND), EntityUid("Action", "GET"), CATALOG)
    decision = gate.active.engine.evaluate(request)
    assert decision.allowed and decision.policy_version == good

    broken = repo.commit(_prefixed(bad), "a bad change")
    assert await gate.reload() is Outcome.REJECTED
    status = gate.status()
    assert status.active_version == good
    assert status.last_rejected is not None
    assert status.last_rejected.version == broken
    assert status.last_rejected.stage == stage
    assert {p.code for p in status.last_rejected.problems} == codes
    assert {p.file for p in status.last_rejected.problems} == set(bad)
    assert all(p.line >= 1 for p in status.last_rejected.problems)
    document = status.to_json()["last_rejected"]
    assert document["version"] == broken and document["errors"]

    fixed = repo.commit(_prefixed(dict.fromkeys(bad)), "revert the bad change")  # type: ignore[arg-type]
    assert await gate.reload() is Outcome.ACTIVATED
    assert gate.status().active_version == fixed
    assert gate.status().last_rejected is not None  # the history stays visible


async def test_every_error_of_a_commit_is_reported(repo: PolicyRepo, gate: Gate[Engine]) -> None:
    repo.commit(_prefixed({**example_files(), **SYNTAX_ERROR, **SCHEMA_VIOLATION}))
    assert await gate.reload() is Outcome.REJECTED
    rejected = gate.status().last_rejected
    assert rejected is not None
    assert {p.file for p in rejected.problems} == {"broken.cedar", "extra.cedar"}
    assert list(rejected.problems) == sorted(rejected.problems)
    assert gate.status().active_version is None
