"""Run the real ``meshward`` command line, as users and scripts do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["REPO", "meshward", "meshward_argv", "meshward_env"]

REPO = Path(__file__).resolve().parents[2]


def meshward_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshward", *args]


def meshward_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``MESHWARD_*`` settings, this checkout first
    on the path, plus ``extra``: what every ``meshward`` a test starts runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWARD_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def meshward(
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``meshward ARGS`` to completion and return its result (never raises on exit code)."""
    return subprocess.run(
        meshward_argv(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env=meshward_env(env),
        cwd=cwd or REPO,
        timeout=timeout,
        check=False,
    )
