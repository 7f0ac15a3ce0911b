"""Build a policy source from a ``--policies`` value and the settings (wiring only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from authz.errors import SourceError
from authz.sources.directory import DirectorySource
from authz.sources.git import ArchiveLimits, GitSource, is_git_url
from authz.sources.protocol import PolicySource
from meshward.settings import PolicySourceSettings, secret_value

__all__ = ["make_source", "webhook_secret", "work_dir_for"]

_GIT_POLL = 30.0
_DIR_POLL = 2.0


def make_source(
    spec: str,
    settings: PolicySourceSettings,
    state_dir: Path,
    *,
    branch: str | None = None,
    subdir: str | None = None,
) -> PolicySource:
    """A :class:`GitSource` for a Git URL, else a :class:`DirectorySource`."""
    if is_git_url(spec):
        return GitSource(
            spec,
            cache_dir=state_dir / "policy-cache",
            branch=branch or settings.branch,
            subdir=settings.subdir if subdir is None else subdir,
            poll_interval=settings.poll_interval or _GIT_POLL,
            timeout=settings.git_timeout,
            limits=ArchiveLimits(
                max_total_bytes=settings.max_archive_bytes,
                max_files=settings.max_archive_files,
                max_file_bytes=settings.max_file_bytes,
            ),
        )
    return DirectorySource(Path(spec), poll_interval=settings.poll_interval or _DIR_POLL)


def work_dir_for(source: PolicySource, state_dir: Path) -> Path:
    """Where a source's versions are written out while being gated."""
    key = hashlib.sha256(source.description.encode()).hexdigest()[:12]
    return state_dir / "policy-checkouts" / key


def webhook_secret(settings: PolicySourceSettings) -> bytes | None:
    """The refresh webhook's HMAC key: from the settings or the file they name."""
    try:
        return secret_value(settings.webhook_secret, settings.webhook_secret_file, "webhook secret")
    except ValueError as exc:
        raise SourceError(str(exc), code="bad_secret") from exc
