"""Run the real ``meshward`` command line, as users and scripts do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["REPO", "meshward", "meshward_argv"]

REPO = Path(__file__).resolve().parents[2]


def meshward_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshward", *args]


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
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
        env=_env(env),
        cwd=cwd or REPO,
        timeout=timeout,
        check=False,
    )
