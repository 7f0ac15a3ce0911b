"""The gate's state machine, over real directory and Git sources.

``prepare`` here is a small JSON loader (the gate is generic in what it
builds); the gate with the real Cedar engine is tested in
tests/integration/policysrc/.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from authz.errors import Problem, Rejected
from authz.sources.directory import DirectorySource
from authz.sources.gate import Activation, Gate, Outcome, Rejection
from authz.sources.git import GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo
from tests.support.policyfiles import load_config


def _dir(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "policies"
    root.mkdir(exist_ok=True)
    (root / "config.json").write_text(text)
    return root


def _gate(source: Any, tmp_path: Path, **kw: Any) -> Gate[dict[str, Any]]:
    return Gate(source, load_config, clock=FixedClock(), work_dir=tmp_path / "work", **kw)


async def test_activate_then_unchanged_then_reject_keeps_last_good(tmp_path: Path) -> None:
    root = _dir(tmp_path, '{"n": 1}')
    gate = _gate(DirectorySource(root), tmp_path)
    seen: list[Activation[dict[str, Any]]] = []
    rejected: list[Rejection] = []
    gate.on_activate(seen.append)
    gate.on_reject(rejected.append)

    assert await gate.reload() is Outcome.ACTIVATED
    first = gate.status().active_version
    assert first is not None and first.startswith("sha256:")
    assert [a.engine for a in seen] == [{"n": 1}]
    assert await gate.reload() is Outcome.UNCHANGED

    (root / "config.json").write_text("{broken")
    assert await gate.reload() is Outcome.REJECTED
    status = gate.status()
    assert status.active_version == first
    assert status.last_rejected is not None
    assert status.last_rejected.version != first
    assert [p.code for p in status.last_rejected.problems] == ["bad-json"]
    assert rejected == [status.last_rejected]
    last_error = status.to_json()["last_error"]
    assert last_error["kind"] == "rejected"
    assert last_error["errors"][0]["code"] == "bad-json"
    # the same bad version is not gated again on every poll
    assert await gate.reload() is Outcome.UNCHANGED
    assert len(rejected) == 1

    (root / "config.json").write_text('{"n": 2}')
    assert await gate.reload() is Outcome.ACTIVATED
    assert [a.engine for a in seen] == [{"n": 1}, {"n": 2}]
    assert gate.status().reloads == {
        "activated": 2,
        "unchanged": 2,
        "rejected": 1,
        "vetoed": 0,
        "fetch_failed": 0,
    }
    json.dumps(gate.status().to_json())


async def test_listener_added_late_sees_the_active_version(tmp_path: Path) -> None:
    gate = _gate(DirectorySource(_dir(tmp_path, "{}")), tmp_path)
    await gate.reload()
    seen: list[str] = []
    gate.on_activate(lambda a: seen.append(a.version))
    assert seen == [gate.status().active_version]


async def test_a_failing_listener_does_not_stop_activation(tmp_path: Path) -> None:
    gate = _gate(DirectorySource(_dir(tmp_path, "{}")), tmp_path)

    def boom(_: Activation[dict[str, Any]]) -> None:
        raise RuntimeError("listener bug")

    seen: list[str] = []
    gate.on_activate(boom)
    gate.on_activate(lambda a: seen.append(a.version))
    assert await gate.reload() is Outcome.ACTIVATED
    assert seen == [gate.status().active_version]


async def test_git_fetch_error_keeps_last_good_and_is_shown(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    sha = repo.commit({"config.json": '{"n": 1}'})
    source = GitSource(repo.url, cache_dir=tmp_path / "cache")
    gate = _gate(source, tmp_path)
    assert await gate.reload() is Outcome.ACTIVATED
    assert gate.status().active_version == sha
    assert gate.seconds_since_fetch() == 0.0

    shutil.rmtree(repo.remote)
    assert await gate.reload() is Outcome.FETCH_FAILED
    status = gate.status()
    assert status.active_version == sha
    assert status.last_fetch_error is not None
    assert status.last_fetch_error.code == "unreachable"
    assert status.to_json()["last_error"]["kind"] == "fetch"
    assert status.to_json()["last_error"]["code"] == "unreachable"
    assert gate.active is not None and gate.active.engine == {"n": 1}


async def test_missing_subdirectory_is_a_rejection(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({"config.json": "{}"})
    gate = _gate(GitSource(repo.url, cache_dir=tmp_path / "c", subdir="nope"), tmp_path)
    assert await gate.reload() is Outcome.REJECTED
    rejected = gate.status().last_rejected
    assert rejected is not None
    assert rejected.stage == "checkout"
    assert [p.code for p in rejected.problems] == ["not_found"]
    assert gate.status().active_version is None


@pytest.mark.parametrize(
    ("veto_result", "expected_second"),
    # An unreachable veto (Redis down) is no veto: the version is gated on its own merits.
    [(True, Outcome.VETOED), (False, Outcome.ACTIVATED), (OSError, Outcome.ACTIVATED)],
)
async def test_veto_from_other_replicas(
    tmp_path: Path, veto_result: Any, expected_second: Outcome
) -> None:
    root = _dir(tmp_path, '{"n": 1}')
    asked: list[str] = []

    async def veto(version: str) -> bool:
        asked.append(version)
        if len(asked) == 1:
            return False
        if veto_result is OSError:
            raise OSError("redis down")
        return bool(veto_result)

    gate = _gate(DirectorySource(root), tmp_path, veto=veto)
    assert await gate.reload() is Outcome.ACTIVATED
    first = gate.status().active_version
    (root / "config.json").write_text('{"n": 2}')
    assert await gate.reload() is expected_second
    if expected_second is Outcome.VETOED:
        assert gate.status().active_version == first
        rejected = gate.status().last_rejected
        assert rejected is not None and rejected.vetoed
    else:
        assert gate.status().active_version != first


async def test_unreachable_veto_with_nothing_active_trusts_the_local_gate(tmp_path: Path) -> None:
    async def veto(version: str) -> bool:
        raise OSError("redis down")

    gate = _gate(DirectorySource(_dir(tmp_path, "{}")), tmp_path, veto=veto)
    assert await gate.reload() is Outcome.ACTIVATED


async def test_a_veto_is_asked_again_every_time_never_remembered(tmp_path: Path) -> None:
    root = _dir(tmp_path, '{"n": 1}')
    answers: list[bool | type[Exception]] = [False, True, True, OSError, False]
    asked: list[str] = []

    async def veto(version: str) -> bool:
        asked.append(version)
        answer = answers.pop(0)
        if answer is OSError:
            raise OSError("redis down")
        return bool(answer)

    gate = _gate(DirectorySource(root), tmp_path, veto=veto)
    assert await gate.reload() is Outcome.ACTIVATED
    first = gate.status().active_version
    (root / "config.json").write_text('{"n": 2}')
    assert await gate.reload() is Outcome.VETOED
    assert gate.status().latest_state == "vetoed"
    assert await gate.reload() is Outcome.VETOED  # asked again, not taken from memory
    # Redis restarts: the failed lookup does not veto, this gate's own checks decide.
    assert await gate.reload() is Outcome.ACTIVATED
    second = gate.status().active_version
    assert second != first
    assert gate.status().latest_version == second
    assert gate.status().latest_state == "active"
    # Once Redis answers, the version activated without it is asked about again.
    assert await gate.reload() is Outcome.UNCHANGED
    assert asked == [first, second, second, second, second]
    assert await gate.reload() is Outcome.UNCHANGED
    assert len(asked) == 5  # confirmed: not asked on every poll


async def test_a_failed_check_is_remembered_until_an_explicit_retry(tmp_path: Path) -> None:
    root = _dir(tmp_path, '{"n": 1}')
    calls: list[str] = []

    def flaky(path: Path, version: str) -> dict[str, Any]:
        calls.append(version)
        if len(calls) == 2:
            raise Rejected([Problem("", 0, 0, "prepare_timeout", "too slow")], stage="prepare")
        return load_config(path, version)

    gate = Gate(DirectorySource(root), flaky, clock=FixedClock(), work_dir=tmp_path / "work")
    assert await gate.reload() is Outcome.ACTIVATED
    (root / "config.json").write_text('{"n": 2}')
    assert await gate.reload() is Outcome.REJECTED
    status = gate.status()
    assert status.last_rejected is not None and status.last_rejected.stage == "prepare"
    assert (status.latest_state, status.latest_version) == ("rejected", calls[1])
    assert await gate.reload() is Outcome.UNCHANGED  # not checked again on every poll
    assert len(calls) == 2
    assert await gate.reload(retry=True) is Outcome.ACTIVATED
    assert gate.status().active_version == calls[1] == calls[2]


async def test_run_polls_and_trigger_wakes_it(tmp_path: Path) -> None:
    root = _dir(tmp_path, '{"n": 1}')
    gate = _gate(DirectorySource(root, poll_interval=3600), tmp_path)
    versions: list[str] = []
    changed = asyncio.Event()

    def on_activate(a: Activation[dict[str, Any]]) -> None:
        versions.append(a.version)
        changed.set()

    gate.on_activate(on_activate)
    task = asyncio.create_task(gate.run())
    try:
        await asyncio.wait_for(changed.wait(), 10)
        changed.clear()
        (root / "config.json").write_text('{"n": 2}')
        gate.trigger()  # the poll interval is an hour: only the trigger can explain a reload
        await asyncio.wait_for(changed.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(versions) == 2 and versions[0] != versions[1]


async def test_files_changing_while_read_are_retried_not_rejected(tmp_path: Path) -> None:
    root = _dir(tmp_path, '{"n": 1}')
    source = DirectorySource(root)
    gate = _gate(source, tmp_path)
    assert await gate.reload() is Outcome.ACTIVATED
    config = root / "config.json"
    config.write_text('{"n": 22}')
    source.latest()  # the source has seen this content...
    stat = config.stat()
    config.write_text('{"n": 33}')  # ...which changes again: same size, same mtime
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert await gate.reload() is Outcome.FETCH_FAILED
    status = gate.status()
    assert status.last_rejected is None
    assert status.last_fetch_error is not None
    assert status.last_fetch_error.code == "changed_during_read"
    assert await gate.reload() is Outcome.ACTIVATED
    assert gate.active is not None and gate.active.engine == {"n": 33}


async def test_a_gate_crash_rejects_the_version(tmp_path: Path) -> None:
    def crash(root: Path, version: str) -> dict[str, Any]:
        raise ZeroDivisionError("bug in a loader")

    gate = Gate(
        DirectorySource(_dir(tmp_path, "{}")), crash, clock=FixedClock(), work_dir=tmp_path / "w"
    )
    assert await gate.reload() is Outcome.REJECTED
    rejected = gate.status().last_rejected
    assert rejected is not None and rejected.stage == "internal"
    assert [p.code for p in rejected.problems] == ["internal-error"]
    assert await gate.reload() is Outcome.UNCHANGED  # not retried on every poll
