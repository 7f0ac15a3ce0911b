"""``kill -9`` of a single-worker PDP leaves no process behind: its checking child dies with it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.support.gitrepo import PolicyRepo
from tests.support.pdp import pdp_process
from tests.support.policyfiles import example_files
from tests.support.wait import eventually


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":  # zombies have already died
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            alive.add(pid)
    return alive


def _generated(count: int) -> str:
    return "".join(
        f'@id("gen-{i}")\npermit (principal == Workload::"spiffe://meshward.local/ns/x/sa/w{i}",'
        f' action == Action::"GET", resource);\n'
        for i in range(count)
    )


def test_kill_9_leaves_no_checking_process_behind(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit(example_files())
    with pdp_process(tmp_path / "pdp", policies=repo.url) as pdp:
        assert pdp.process is not None
        # A big change, so the PDP is killed while its child is busy checking it.
        repo.commit({"generated.cedar": _generated(3000)}, "3,000 more policies")
        httpx.post(f"{pdp.http_url}/v1/policies/refresh").raise_for_status()
        pid = pdp.process.pid
        # The PDP checks its policies in a child process.
        left = eventually(lambda: _children(pid), 60, 0.05, "the PDP's checking child", pdp.output)
        os.kill(pdp.process.pid, signal.SIGKILL)
        pdp.process.wait(timeout=10)
        eventually(lambda: not _alive(left), 10, 0.05, "the PDP's children to exit", pdp.output)
