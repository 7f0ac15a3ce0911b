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
import logging
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from authz.errors import CheckoutError, FetchError, Problem, Rejected, SourceError
from authz.sources.protocol import Pinnable, PolicySource, Pollable, Refreshable, Revision

__all__ = ["ArchiveLimits", "GitSource", "archive_tree", "is_git_url", "redact_url", "run_git"]

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


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much one version may unpack to (``policy_source.max_archive_*``)."""

    max_total_bytes: int = 64 * 1024 * 1024
    max_files: int = 10_000
    max_file_bytes: int = 8 * 1024 * 1024


_CHUNK = 64 * 1024


def _too_much(treeish: str, code: str, what: str) -> Rejected:
    problem = Problem("", 0, 0, code, f"{treeish[:80]}: {what}")
    return Rejected([problem], stage="checkout", code=code)


def _unpack(stream: IO[bytes], dest: Path, treeish: str, limits: ArchiveLimits) -> None:
    """Extract a tar stream member by member, counting what is really written."""
    total = 0
    files = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.isdir():
                safe = tarfile.data_filter(member, str(dest))
                (dest / safe.name).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                # A link or special file: policy bundles hold regular files only.
                raise _too_much(
                    treeish, "archive_bad_member", f"{member.name[:200]!r} is not a regular file"
                )
            files += 1
            if files > limits.max_files:
                raise _too_much(
                    treeish, "archive_too_many_files", f"more than {limits.max_files} files"
                )
            if member.size > limits.max_file_bytes:
                raise _too_much(
                    treeish,
                    "archive_file_too_large",
                    f"{member.name[:200]!r} is larger than {limits.max_file_bytes} bytes",
                )
            safe = tarfile.data_filter(member, str(dest))
            target = dest / safe.name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                raise _too_much(treeish, "archive_bad_member", f"{member.name[:200]!r}")
            written = 0
            with open(target, "xb") as out:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if written > limits.max_file_bytes:
                        raise _too_much(treeish, "archive_file_too_large", f"{member.name[:200]!r}")
                    if total > limits.max_total_bytes:
                        raise _too_much(
                            treeish,
                            "archive_too_large",
                            f"unpacks to more than {limits.max_total_bytes} bytes",
                        )
                    out.write(chunk)


def archive_tree(
    git_dir: Path,
    treeish: str,
    dest: Path,
    *,
    timeout: float = 120.0,
    limits: ArchiveLimits | None = None,
) -> Path:
    """Write the tree ``treeish`` (``SHA`` or ``SHA:subdir``) of ``git_dir`` under ``dest``.

    ``git archive`` is read as a stream and unpacked member by member, so memory
    stays flat whatever the version unpacks to. Past ``limits`` (total bytes,
    file count, one file's size) ``git`` is stopped and the version is
    ``Rejected`` (stage ``checkout``): a small commit that expands hugely never
    fills the PDP's memory or disk. Members are vetted with tarfile's ``data``
    filter (no absolute paths, nothing outside ``dest``); links and special
    files are refused. Other failures raise ``CheckoutError``.
    """
    limits = limits or ArchiveLimits()
    try:
        proc = subprocess.Popen(
            ["git", "archive", "--format=tar", treeish],
            cwd=git_dir,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise CheckoutError(f"cannot run git: {exc.strerror}", code="no_git") from exc
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    unpack_error: Exception | None = None
    finished = False
    try:
        stdout = proc.stdout
        if stdout is None:  # never: stdout is a pipe
            raise CheckoutError("git archive has no output")
        try:
            _unpack(stdout, dest, treeish, limits)
        except (tarfile.TarError, OSError) as exc:
            unpack_error = exc  # judged once git has exited: its failure explains it
        # What follows the end-of-archive marker is padding (or, when git failed,
        # nothing): read it so git can exit, but never more than a little.
        if not _drain(stdout, _CHUNK * 16):
            proc.kill()
        finished = True
    finally:
        if not finished:  # rejected past a limit, or failed: stop git now
            proc.kill()
        proc.wait()
        timer.cancel()
        stderr = proc.stderr.read(64 * 1024) if proc.stderr is not None else b""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if timed_out.is_set():
        raise CheckoutError(f"git archive timed out after {timeout:g}s", code="timeout")
    if proc.returncode != 0:
        detail = redact_url(stderr.decode("utf-8", "replace").strip())[-2000:]
        raise CheckoutError(f"git archive failed: {detail}", code=_classify(detail))
    if unpack_error is not None:
        raise CheckoutError(f"cannot unpack {treeish[:80]}: {unpack_error}") from unpack_error
    return dest


def _drain(stream: IO[bytes], limit: int) -> bool:
    """Read ``stream`` to its end; ``False`` if more than ``limit`` bytes were left."""
    left = 0
    while chunk := stream.read(_CHUNK):
        left += len(chunk)
        if left > limit:
            return False
    return True


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
        limits: ArchiveLimits | None = None,
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
        self._limits = limits or ArchiveLimits()
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
            return archive_tree(
                self._git_dir, treeish, dest, timeout=self._timeout, limits=self._limits
            )


if TYPE_CHECKING:

    def _satisfies(source: GitSource) -> tuple[PolicySource, Refreshable, Pollable, Pinnable]:
        return source, source, source, source
