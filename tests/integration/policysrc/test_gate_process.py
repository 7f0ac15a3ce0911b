"""The PDP's gate checks bundles in a child process, and survives that process dying."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.engine import Engine
from authz.model import AccessRequest, EntityUid, Identity
from authz.sources.bundles import ProcessPreparer
from authz.sources.gate import Gate, Outcome
from authz.sources.git import GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo
from tests.support.policyfiles import SYNTAX_ERROR, example_files

FRONTEND = EntityUid("Workload", "spiffe://meshward.local/ns/shop/sa/frontend")
CATALOG = EntityUid("Service", "spiffe://meshward.local/ns/shop/sa/catalog")
REQUEST = AccessRequest(Identity(FRONTEND), EntityUid("Action", "GET"), CATALOG)


def _prefixed(files: dict[str, str]) -> dict[str, str | None]:
    return {f"policies/{k}": v for k, v in files.items()}


@pytest.fixture
def preparer() -> Iterator[ProcessPreparer]:
    checker = ProcessPreparer()
    yield checker
    checker.close()


@pytest.fixture
def repo(tmp_path: Path) -> PolicyRepo:
    return PolicyRepo(tmp_path / "repo")


@pytest.fixture
def gate(repo: PolicyRepo, preparer: ProcessPreparer, tmp_path: Path) -> Gate[Engine]:
    source = GitSource(repo.url, cache_dir=tmp_path / "cache", subdir="policies")
    return Gate(source, preparer, clock=FixedClock(), work_dir=tmp_path / "work")


async def test_bundles_are_checked_in_another_process(
    repo: PolicyRepo, gate: Gate[Engine], preparer: ProcessPreparer
) -> None:
    good = repo.commit(_prefixed(example_files()), "the example policies")
    assert await gate.reload() is Outcome.ACTIVATED
    assert preparer.last_pid is not None and preparer.last_pid != os.getpid()
    assert gate.active is not None and gate.active.version == good
    decision = gate.active.engine.evaluate(REQUEST)
    assert decision.allowed and decision.policy_version == good

    # Problems found in the child come back whole: stage, codes, files.
    broken = repo.commit(_prefixed(SYNTAX_ERROR), "a bad change")
    assert await gate.reload() is Outcome.REJECTED
    status = gate.status()
    assert status.active_version == good
    assert status.last_rejected is not None and status.last_rejected.version == broken
    assert status.last_rejected.stage == "bundle"
    assert {p.code for p in status.last_rejected.problems} == {"syntax-error"}
    assert {p.file for p in status.last_rejected.problems} == set(SYNTAX_ERROR)


async def test_a_killed_checker_keeps_the_last_good_version_and_recovers(
    repo: PolicyRepo, gate: Gate[Engine], preparer: ProcessPreparer
) -> None:
    good = repo.commit(_prefixed(example_files()), "the example policies")
    assert await gate.reload() is Outcome.ACTIVATED
    first_child = preparer.last_pid
    assert first_child is not None and first_child != os.getpid()

    os.kill(first_child, signal.SIGKILL)
    files = example_files()
    changed = {"tests/extra.yaml": files[_a_test_file(files)]}
    newer = repo.commit(_prefixed(changed), "one more test file")
    assert await gate.reload() is Outcome.FETCH_FAILED
    status = gate.status()
    assert status.active_version == good  # never serve nothing
    assert status.last_fetch_error is not None
    assert status.last_fetch_error.code == "prepare_crashed"
    assert status.last_rejected is None  # not remembered as a bad version
    assert gate.active is not None
    assert gate.active.engine.evaluate(REQUEST).policy_version == good

    assert await gate.reload() is Outcome.ACTIVATED  # a new child, the same version again
    assert gate.status().active_version == newer
    assert gate.status().last_fetch_error is None
    assert preparer.last_pid not in (None, first_child, os.getpid())


def _a_test_file(files: dict[str, str]) -> str:
    return next(name for name in sorted(files) if name.startswith("tests/"))
