"""``kill -9`` of a single-worker PDP leaves no process behind: its checking child dies with it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.support.gitrepo import PolicyRepo
from tests.support.pdp import pdp_process
from tests.support.policyfiles import example_files
from tests.support.procs import alive, descendants
from tests.support.wait import eventually


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
        left = eventually(
            lambda: descendants(pid), 60, 0.05, "the PDP's checking child", pdp.output
        )
        os.kill(pdp.process.pid, signal.SIGKILL)
        pdp.process.wait(timeout=10)
        eventually(lambda: not alive(left), 10, 0.05, "the PDP's children to exit", pdp.output)
