"""A real Git policy repository for tests: a bare remote and a clone that commits and pushes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PolicyRepo", "git"]

_ENV = {
    "GIT_AUTHOR_NAME": "Policy Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Policy Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **_ENV, "HOME": str(cwd)}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class PolicyRepo:
    """``remote`` is a bare repository; :meth:`commit` writes files in a clone and pushes."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.branch = branch
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.remote.mkdir(parents=True)
        git("init", "--quiet", "--bare", f"--initial-branch={branch}", ".", cwd=self.remote)
        self.work.mkdir()
        git("init", "--quiet", f"--initial-branch={branch}", ".", cwd=self.work)
        git("remote", "add", "origin", str(self.remote), cwd=self.work)

    @property
    def url(self) -> str:
        return self.remote.as_uri()

    def commit(
        self,
        files: Mapping[str, str | None],
        message: str = "change policies",
        *,
        push: bool = True,
    ) -> str:
        """Write (or, for ``None``, delete) ``files``, commit, push; return the new SHA."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        git("add", "--all", ".", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        if push:
            git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)
