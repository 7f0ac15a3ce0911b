"""meshward.metrics: per-run directories and merged multi-process rendering (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from meshward.metrics import MULTIPROC_ENV, enable_multiprocess, prepare_run_dir, render
from tests.support.cli import REPO

WORKER = """
from prometheus_client import CollectorRegistry, Counter, Gauge
registry = CollectorRegistry()
c = Counter("meshward_test_things", "things", ["kind"], registry=registry)
g = Gauge("meshward_test_ready", "ready", registry=registry, multiprocess_mode="livemin")
c.labels("a").inc({n})
g.set({ready})
"""

RENDER = """
from prometheus_client import CollectorRegistry
from meshward.metrics import render
print(render(CollectorRegistry()).decode())
"""


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_workers_samples_are_summed(tmp_path: Path) -> None:
    run_dir = prepare_run_dir(tmp_path / "state", "run1")
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    env["PYTHONPATH"] = str(REPO)
    enable_multiprocess(run_dir, env)
    _run(WORKER.format(n=2, ready=1), env)
    _run(WORKER.format(n=3, ready=1), env)
    text = _run(RENDER, env)
    assert 'meshward_test_things_total{kind="a"} 5.0' in text


def test_single_process_renders_its_own_registry() -> None:
    assert MULTIPROC_ENV not in os.environ
    registry = CollectorRegistry()
    Counter("meshward_test_single", "single", registry=registry).inc()
    assert b"meshward_test_single_total 1.0" in render(registry)


def test_each_run_starts_empty_and_old_runs_go(tmp_path: Path) -> None:
    old = prepare_run_dir(tmp_path, "old")
    (old / "counter_1.db").write_bytes(b"x")
    new = prepare_run_dir(tmp_path, "new")
    assert not old.exists()
    assert new.is_dir() and not any(new.iterdir())
    again = prepare_run_dir(tmp_path, "new")
    assert again == new


@pytest.mark.parametrize("run_id", ["", "..", "a/b", "."])
def test_bad_run_ids_are_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ValueError):
        prepare_run_dir(tmp_path, run_id)
