"""A policy source that is a branch of a Git repository, read with the ``git`` CLI.

The remote (``file://``, SSH or HTTPS) is fetched into a bare cache repository
under the state directory; a revision is the fetched commit's SHA and its files
are the tree of that commit (optionally one subdirectory of it), written out
with ``git archive``. Nothing is ever checked out in place, so a fetch never
disturbs a version being loaded.

Credentials come only from the environment Git already uses — an SSH agent or
key, credential helpers, ``GIT_ASKPASS`` — never from meshward's settings.
Git runs with ``GIT_TERMINAL_PROMPT=0`` (and SSH in batch mode) so a missing
credential is an error, not a hung prompt. Any ``user:password@`` in a URL is
redacted from every message meshward writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from authz.sources.errors import CheckoutError, FetchError, SourceError
from authz.sources.protocol import Pinnable, PolicySource, Pollable, Refreshable, Revision

__all__ = ["GitSource", "archive_tree", "is_git_url", "redact_url", "run_git"]

log = logging.getLogger(__name__)

_SCHEMES = ("file://", "ssh://", "https://", "http://", "git://", "git+ssh://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_REF = "refs/meshward/head"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]+$")


def is_git_url(value: str) -> bool:
    """Whether a ``--policies`` value names a Git remote rather than a directory."""
    return value.startswith(_SCHEMES) or bool(_SCP_LIKE.match(value))


def redact_url(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user:pass@host`` URL redacted."""
    return _USERINFO.sub(r"\g<scheme>[redacted]@", text)


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def run_git(
    args: list[str], *, cwd: Path | None = None, timeout: float, secret: str = ""
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS``; on failure raise ``SourceError`` with redacted stderr."""
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(),
            capture_output=True,
            timeout=timeout,
            check=True,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git {args[0]} timed out after {timeout:g}s", code="timeout") from exc
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode("utf-8", "replace").strip()
        if secret:
            detail = detail.replace(secret, redact_url(secret))
        detail = redact_url(detail)[-2000:]
        raise SourceError(f"git {args[0]} failed: {detail}", code=_classify(detail)) from exc
    except OSError as exc:
        raise SourceError(f"cannot run git: {exc.strerror}", code="no_git") from exc


def _classify(stderr: str) -> str:
    text = stderr.lower()
    if "couldn't find remote ref" in text:
        return "no_branch"
    if "not a valid object name" in text or "not a tree object" in text:
        return "not_found"
    if any(
        s in text
        for s in (
            "does not appear to be a git repository",
            "could not read from remote",
            "could not resolve host",
            "connection refused",
            "repository not found",
            "not found",
            "unable to access",
        )
    ):
        return "unreachable"
    return "fetch_failed"


def archive_tree(git_dir: Path, treeish: str, dest: Path, *, timeout: float = 120.0) -> Path:
    """Write the tree ``treeish`` (``SHA`` or ``SHA:subdir``) of ``git_dir`` under ``dest``.

    Raises ``CheckoutError``. Archive members are extracted with tarfile's
    ``data`` filter: no absolute paths, no links out of ``dest``, no devices.
    """
    try:
        done = run_git(["archive", "--format=tar", treeish], cwd=git_dir, timeout=timeout)
    except SourceError as exc:
        raise CheckoutError(str(exc), code=exc.code) from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise CheckoutError(f"cannot unpack {treeish}: {exc}") from exc
    return dest


class GitSource:
    """One branch of a Git remote, fetched into ``cache_dir``."""

    def __init__(
        self,
        url: str,
        *,
        cache_dir: Path,
        branch: str = "main",
        subdir: str = "",
        poll_interval: float = 30.0,
        timeout: float = 60.0,
    ) -> None:
        if not _BRANCH.match(branch):
            raise SourceError(f"invalid branch name {branch!r}", code="bad_branch")
        subdir = subdir.strip("/")
        if subdir and any(part in ("", ".", "..") for part in subdir.split("/")):
            raise SourceError(f"invalid subdirectory {subdir!r}", code="bad_subdir")
        self._url = url
        self._branch = branch
        self._subdir = subdir
        self._poll_interval = poll_interval
        self._timeout = timeout
        key = hashlib.sha256(f"{url}\0{branch}".encode()).hexdigest()[:16]
        self._git_dir = cache_dir / f"{key}.git"
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``git`` user of the cache at a time: threads here, and PDP worker processes."""
        with self._lock:
            self._git_dir.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{self._git_dir}.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def description(self) -> str:
        where = f" subdir {self._subdir}" if self._subdir else ""
        return f"git {redact_url(self._url)} branch {self._branch}{where}"

    @property
    def poll_interval(self) -> float:
        return self._poll_interval

    @property
    def git_dir(self) -> Path:
        """The bare cache repository."""
        return self._git_dir

    def _ensure_cache(self) -> None:
        if (self._git_dir / "HEAD").exists():
            return
        self._git_dir.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(self._git_dir)], timeout=self._timeout)

    def refresh(self) -> None:
        with self._locked():
            try:
                if not (self._git_dir / "HEAD").exists():
                    log.info(
                        "fetching policies for the first time",
                        extra={"fields": {"source": self.description, "timeout": self._timeout}},
                    )
                self._ensure_cache()
                run_git(
                    [
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--force",
                        "--",
                        self._url,
                        f"+refs/heads/{self._branch}:{_REF}",
                    ],
                    cwd=self._git_dir,
                    timeout=self._timeout,
                    secret=self._url,
                )
            except SourceError as exc:
                raise FetchError(f"{self.description}: {exc}", code=exc.code) from exc

    def latest(self) -> Revision:
        return self.resolve(_REF)

    def resolve(self, ref: str) -> Revision:
        if not (self._git_dir / "HEAD").exists():
            raise FetchError(f"{self.description}: nothing fetched yet", code="not_fetched")
        if ref != _REF and not _SHA.match(ref) and not _BRANCH.match(ref):
            raise FetchError(f"invalid revision {ref[:80]!r}", code="bad_ref")
        try:
            done = run_git(
                ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                cwd=self._git_dir,
                timeout=self._timeout,
            )
        except SourceError as exc:
            code = "not_fetched" if ref == _REF else "unknown_revision"
            raise FetchError(f"{self.description}: no revision {ref[:80]}", code=code) from exc
        return Revision(done.stdout.decode().strip(), self.description)

    def materialize(self, revision: Revision, dest: Path) -> Path:
        if not _SHA.match(revision.version):
            raise CheckoutError(f"not a commit SHA: {revision.version[:80]!r}", code="bad_ref")
        treeish = f"{revision.version}:{self._subdir}" if self._subdir else revision.version
        with self._locked():
            return archive_tree(self._git_dir, treeish, dest, timeout=self._timeout)


if TYPE_CHECKING:

    def _satisfies(source: GitSource) -> tuple[PolicySource, Refreshable, Pollable, Pinnable]:
        return source, source, source, source
