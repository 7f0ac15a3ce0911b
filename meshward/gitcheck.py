"""Is a path inside a Git work tree, and would ``git add`` pick it up?

Used to warn before a private key is written where a commit could carry it
away. Asks the ``git`` command line (``rev-parse``, ``check-ignore``); no Git
installed, or any Git error, means "no warning" (this is advice, not a guard).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["unignored_in_work_tree"]


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def unignored_in_work_tree(path: Path) -> Path | None:
    """The work tree's root when ``path`` lies inside one and is not ignored, else ``None``."""
    existing = path if path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    top = _git("rev-parse", "--show-toplevel", cwd=existing)
    if top is None or top.returncode != 0 or not top.stdout.strip():
        return None
    ignored = _git("check-ignore", "--quiet", "--no-index", str(path.absolute()), cwd=existing)
    if ignored is not None and ignored.returncode == 0:
        return None
    return Path(top.stdout.strip())
