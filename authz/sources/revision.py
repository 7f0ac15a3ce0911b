"""A candidate policy set named on the command line: a directory or a Git revision.

``meshward policy replay --policies`` takes a directory, or a revision of a
local Git repository (``HEAD``, ``origin/main``, a SHA), optionally with a
subdirectory in Git's own ``REV:path`` form (``HEAD:policies``).
"""

from __future__ import annotations

import re
from pathlib import Path

from authz.errors import FetchError, SourceError
from authz.sources.directory import content_version
from authz.sources.git import archive_tree, is_git_url, run_git

__all__ = ["materialize_candidate"]

_REV = re.compile(r"^[A-Za-z0-9._/@{}^~-]+$")


def materialize_candidate(spec: str, repo: Path, dest: Path) -> tuple[Path, str]:
    """``(directory, version)`` of the candidate ``spec``; Git trees are written under ``dest``.

    Raises ``SourceError`` when ``spec`` is neither a directory nor a revision of ``repo``.
    """
    as_dir = Path(spec)
    if as_dir.is_dir():
        return as_dir, content_version(as_dir)
    if is_git_url(spec):
        raise FetchError(
            "a remote URL is not a revision: fetch it, then name the revision "
            "(e.g. origin/main:policies)",
            code="bad_ref",
        )
    rev, _, subdir = spec.partition(":")
    if not rev or rev.startswith("-") or not _REV.match(rev) or ".." in subdir.split("/"):
        raise FetchError(f"not a directory or a Git revision: {spec[:200]!r}", code="bad_ref")
    try:
        done = run_git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
            cwd=repo,
            timeout=60.0,
        )
    except SourceError as exc:
        raise FetchError(
            f"not a directory, nor a revision of the Git repository in {repo}: {spec[:200]!r}",
            code="unknown_revision",
        ) from exc
    sha = done.stdout.decode().strip()
    treeish = f"{sha}:{subdir.strip('/')}" if subdir.strip("/") else sha
    return archive_tree(repo, treeish, dest), sha
