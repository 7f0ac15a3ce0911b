"""Git versions are unpacked as a stream, within limits: a small push cannot become a huge checkout.

Real repositories (a bare remote in tmp_path), real ``git archive``.
"""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from authz.errors import Rejected
from authz.sources.gate import Gate, Outcome
from authz.sources.git import ArchiveLimits, GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo, git

MIB = 1024 * 1024


def _zeros_blob(work: Path, size: int) -> str:
    """A blob of ``size`` zero bytes written straight into the object store (compresses ~1000x)."""
    proc = subprocess.Popen(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=work,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    chunk = bytes(MIB)
    for _ in range(size // MIB):
        proc.stdin.write(chunk)
    proc.stdin.close()
    sha = proc.stdout.read().decode().strip()
    proc.stdout.close()
    assert proc.wait() == 0
    return sha


def _commit_blob(repo: PolicyRepo, name: str, sha: str, mode: str = "100644") -> str:
    git("update-index", "--add", "--cacheinfo", f"{mode},{sha},{name}", cwd=repo.work)
    git("commit", "--quiet", "-m", f"add {name}", cwd=repo.work)
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{repo.branch}", cwd=repo.work)
    return git("rev-parse", "HEAD", cwd=repo.work)


def _source(repo: PolicyRepo, tmp_path: Path, limits: ArchiveLimits) -> GitSource:
    source = GitSource(repo.url, cache_dir=tmp_path / "cache", limits=limits)
    source.refresh()
    return source


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_small_commit_that_expands_hugely_is_rejected_in_flat_memory(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({"schema.cedarschema": "entity User;"})
    _commit_blob(repo, "huge.cedar", _zeros_blob(repo.work, 64 * MIB))
    pack = sum(p.stat().st_size for p in (repo.remote / "objects").rglob("*") if p.is_file())
    assert pack < 2 * MIB  # the push is small...
    limits = ArchiveLimits(max_total_bytes=8 * MIB, max_files=100, max_file_bytes=512 * MIB)
    source = _source(repo, tmp_path, limits)
    dest = tmp_path / "checkout"
    dest.mkdir()
    tracemalloc.start()
    try:
        with pytest.raises(Rejected) as info:
            source.materialize(source.latest(), dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "archive_too_large"
    assert info.value.stage == "checkout"
    assert peak < 4 * MIB  # ...and unpacking it never held more than a few chunks
    assert _size(dest) <= 8 * MIB


@pytest.mark.parametrize(
    ("files", "limits", "code"),
    [
        (
            {f"p{i}.cedar": "// x" for i in range(6)},
            ArchiveLimits(max_files=5),
            "archive_too_many_files",
        ),
        ({"big.cedar": "x" * 4096}, ArchiveLimits(max_file_bytes=4095), "archive_file_too_large"),
    ],
    ids=["file-count", "file-size"],
)
def test_limits_on_file_count_and_file_size(
    tmp_path: Path, files: dict[str, str], limits: ArchiveLimits, code: str
) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit(files)
    source = _source(repo, tmp_path, limits)
    with pytest.raises(Rejected) as info:
        source.materialize(source.latest(), tmp_path / "out")
    assert info.value.code == code
    # Just inside the limits, the same version unpacks.
    wide = _source(repo, tmp_path / "wide", ArchiveLimits())
    wide.materialize(wide.latest(), tmp_path / "ok")
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == sorted(files)


def test_a_symlink_in_a_commit_is_refused(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({"schema.cedarschema": "entity User;"})
    os.symlink("/etc/passwd", repo.work / "leak.cedar")
    repo.commit({})
    source = _source(repo, tmp_path, ArchiveLimits())
    with pytest.raises(Rejected) as info:
        source.materialize(source.latest(), tmp_path / "out")
    assert info.value.code == "archive_bad_member"


async def test_the_gate_remembers_an_oversized_version_as_rejected(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({f"p{i}.cedar": "// x" for i in range(3)})
    source = GitSource(repo.url, cache_dir=tmp_path / "cache", limits=ArchiveLimits(max_files=2))
    calls: list[str] = []

    def prepare(root: Path, version: str) -> str:
        calls.append(version)
        return version

    gate: Gate[str] = Gate(source, prepare, clock=FixedClock(), work_dir=tmp_path / "work")
    assert await gate.reload() is Outcome.REJECTED
    rejected = gate.status().last_rejected
    assert rejected is not None and [p.code for p in rejected.problems] == [
        "archive_too_many_files"
    ]
    assert await gate.reload() is Outcome.UNCHANGED  # not unpacked again on every poll
    assert calls == []
