"""The PDP's gate checks bundles in a child process, and survives that process dying."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.sources.bundles import ProcessPreparer, prepare_engine
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


async def test_a_checker_found_dead_is_replaced_without_blaming_the_version(
    repo: PolicyRepo, gate: Gate[Engine], preparer: ProcessPreparer
) -> None:
    repo.commit(_prefixed(example_files()), "the example policies")
    assert await gate.reload() is Outcome.ACTIVATED
    first_child = preparer.last_pid
    assert first_child is not None and first_child != os.getpid()

    os.kill(first_child, signal.SIGKILL)
    files = example_files()
    newer = repo.commit(_prefixed({"tests/extra.yaml": files[_a_test_file(files)]}), "one more")
    assert await gate.reload() is Outcome.ACTIVATED
    assert gate.status().active_version == newer
    assert gate.status().last_rejected is None
    assert preparer.last_pid not in (None, first_child, os.getpid())


def _many_policies(count: int) -> dict[str, str | None]:
    """The example bundle plus ``count`` generated policies (a slow, memory-hungry check)."""
    extra = "".join(
        f'@id("gen-{i}")\npermit (principal == Workload::"spiffe://meshward.local/ns/x/sa/w{i}",'
        f' action == Action::"GET", resource);\n'
        for i in range(count)
    )
    return _prefixed({**example_files(), "generated.cedar": extra})


@pytest.mark.parametrize(
    ("limits", "codes"),
    [
        ({"timeout": 0.2}, {"prepare_timeout"}),
        # Past RLIMIT_AS, Python raises MemoryError and Cedar's allocator aborts.
        ({"memory_bytes": 64 << 20}, {"prepare_memory", "prepare_crashed"}),
    ],
)
async def test_a_version_that_breaks_a_check_limit_is_rejected_and_remembered(
    repo: PolicyRepo, tmp_path: Path, limits: dict[str, float], codes: set[str]
) -> None:
    good = repo.commit(_prefixed(example_files()), "the example policies")
    source = GitSource(repo.url, cache_dir=tmp_path / "cache", subdir="policies")
    limited = ProcessPreparer(**limits)  # type: ignore[arg-type]
    calls: list[str] = []

    def prepare(root: Path, version: str) -> Engine:
        calls.append(version)
        if version == good:
            return prepare_engine(root, version)
        return limited(root, version)

    gate = Gate(source, prepare, clock=FixedClock(), work_dir=tmp_path / "work")
    try:
        assert await gate.reload() is Outcome.ACTIVATED
        big = repo.commit(_many_policies(3000), "3,000 more policies")
        assert await gate.reload() is Outcome.REJECTED
        status = gate.status()
        assert status.active_version == good  # the last good version keeps serving
        assert status.last_rejected is not None and status.last_rejected.version == big
        assert status.last_rejected.stage == "prepare"
        assert {p.code for p in status.last_rejected.problems} <= codes
        assert (status.latest_version, status.latest_state) == (big, "rejected")
        # Remembered: the next polls do not check it again ...
        assert await gate.reload() is Outcome.UNCHANGED
        assert await gate.reload() is Outcome.UNCHANGED
        assert calls == [good, big]
        # ... an explicit refresh does (and the checker still works afterwards).
        assert await gate.reload(retry=True) is Outcome.REJECTED
        assert calls == [good, big, big]
    finally:
        limited.close()
    assert gate.active is not None
    assert gate.active.engine.evaluate(REQUEST).allowed


def _a_test_file(files: dict[str, str]) -> str:
    return next(name for name in sorted(files) if name.startswith("tests/"))
