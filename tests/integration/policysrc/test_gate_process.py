"""The PDP's gate checks bundles in a child process, and survives that process dying.

A change crosses from the child as a delta against the version the serving
process holds, and builds what a full check builds.
"""

from __future__ import annotations

import asyncio
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


def _same_bundle(engine: Engine, reference: Engine) -> None:
    built, full = engine.bundle, reference.bundle
    assert built.policies == full.policies
    assert list(built.policies) == list(full.policies)
    assert built.index == full.index
    assert built.schema_text == full.schema_text
    assert built.tests == full.tests
    requests = [
        AccessRequest(
            Identity(EntityUid("Workload", f"spiffe://meshward.local/ns/x/sa/w{i}")),
            EntityUid("Action", "GET"),
            CATALOG,
        )
        for i in range(0, 400, 13)
    ]
    for request in [REQUEST, *requests]:
        assert engine.evaluate(request) == reference.evaluate(request)
        assert engine.candidates(request) == reference.candidates(request)


async def test_a_change_crosses_as_a_delta_and_builds_what_a_full_check_builds(
    repo: PolicyRepo, gate: Gate[Engine], preparer: ProcessPreparer, tmp_path: Path
) -> None:
    repo.commit(_many_policies(400), "400 policies")
    assert await gate.reload() is Outcome.ACTIVATED
    assert preparer.last_full
    full_size = preparer.last_answer_bytes
    files = _many_policies(400)
    files["policies/generated.cedar"] = (files["policies/generated.cedar"] or "").replace(
        'action == Action::"GET"', 'action in Action::"read"', 1
    )
    repo.commit(files, "one policy edited")
    assert await gate.reload() is Outcome.ACTIVATED
    assert not preparer.last_full
    assert preparer.last_answer_bytes < full_size / 4
    assert gate.active is not None
    _same_bundle(gate.active.engine, prepare_engine(repo.work / "policies", gate.active.version))


class _Forgetful(dict[bytes, object]):
    """Held pieces that are named but cannot be found: what a base mismatch looks like."""

    def get(self, key: bytes, default: object = None) -> object:
        return default


async def test_a_base_mismatch_is_asked_again_in_full(
    repo: PolicyRepo, gate: Gate[Engine], preparer: ProcessPreparer
) -> None:
    repo.commit(_many_policies(100), "100 policies")
    assert await gate.reload() is Outcome.ACTIVATED
    child = preparer.last_pid
    preparer._bases = [_Forgetful(base) for base in preparer._bases]  # type: ignore[misc]
    files = _many_policies(100)
    files["policies/generated.cedar"] = (files["policies/generated.cedar"] or "") + (
        '@id("one-more")\npermit (principal == Workload::"spiffe://meshward.local/ns/x/sa/extra",'
        ' action == Action::"GET", resource);\n'
    )
    repo.commit(files, "one more policy")
    assert await gate.reload() is Outcome.ACTIVATED
    assert preparer.last_full  # asked again, in full
    assert preparer.last_pid == child  # the child was in step: not replaced
    assert gate.active is not None
    _same_bundle(gate.active.engine, prepare_engine(repo.work / "policies", gate.active.version))
    assert gate.status().last_rejected is None


async def test_a_child_killed_mid_check_fails_closed_then_the_retry_is_a_delta(
    repo: PolicyRepo, gate: Gate[Engine], preparer: ProcessPreparer
) -> None:
    good = repo.commit(_many_policies(200), "200 policies")
    assert await gate.reload() is Outcome.ACTIVATED
    child = preparer.last_pid
    assert child is not None
    big = repo.commit(_many_policies(6000), "6,000 policies: a check long enough to interrupt")
    reload = asyncio.create_task(gate.reload())
    await _until_busy(child)
    os.kill(child, signal.SIGKILL)
    assert await reload is Outcome.REJECTED
    status = gate.status()
    assert status.active_version == good  # fail closed: the last good version serves
    assert status.last_rejected is not None and status.last_rejected.stage == "prepare"
    assert {p.code for p in status.last_rejected.problems} == {"prepare_crashed"}
    assert gate.active is not None and gate.active.engine.evaluate(REQUEST).allowed

    assert await gate.reload(retry=True) is Outcome.ACTIVATED  # a new child
    assert preparer.last_pid not in (None, child)
    assert not preparer.last_full  # against the version held all along
    assert gate.active.version == big
    _same_bundle(gate.active.engine, prepare_engine(repo.work / "policies", big))


async def _until_busy(pid: int, timeout: float = 30.0) -> None:
    """Until the child has used some CPU time on the check it was given."""
    stat = Path(f"/proc/{pid}/stat")
    start = _cpu_ticks(stat)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _cpu_ticks(stat) - start < 10 and loop.time() < deadline:
        await asyncio.sleep(0.01)


def _cpu_ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
