"""A policy source that is a directory on disk, watched for changes.

The version is a hash of every file's relative path and content, so the same
files always give the same version wherever they live. Entries whose name
starts with a dot (``.git``, ``.github``) are not part of the bundle.

A revision is materialised by copying the files and hashing the copy: if the
directory changed in between, the copy is refused (``CheckoutError`` with code
``changed_during_read``) and the next look picks up the new content.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from authz.sources.errors import CheckoutError, FetchError
from authz.sources.protocol import PolicySource, Pollable, Revision
from authz.version import bundle_files, content_version

__all__ = ["DirectorySource", "content_version"]


class DirectorySource:
    """Policies in ``root``; looked at every ``poll_interval`` seconds."""

    def __init__(self, root: Path, *, poll_interval: float = 2.0) -> None:
        self._root = root
        self._poll_interval = poll_interval
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._revision: Revision | None = None

    @property
    def description(self) -> str:
        return f"directory {self._root}"

    @property
    def poll_interval(self) -> float:
        return self._poll_interval

    def _stat_signature(self) -> tuple[tuple[str, int, int], ...]:
        sig = []
        for path in bundle_files(self._root):
            st = path.stat()
            sig.append((path.relative_to(self._root).as_posix(), st.st_size, st.st_mtime_ns))
        return tuple(sig)

    def latest(self) -> Revision:
        if not self._root.is_dir():
            raise FetchError(f"{self.description}: not a directory", code="not_found")
        try:
            signature = self._stat_signature()
            if signature != self._signature or self._revision is None:
                self._revision = Revision(content_version(self._root), self.description)
                self._signature = signature
        except OSError as exc:
            raise FetchError(f"{self.description}: cannot read: {exc.strerror}") from exc
        return self._revision

    def materialize(self, revision: Revision, dest: Path) -> Path:
        try:
            for path in bundle_files(self._root):
                target = dest / path.relative_to(self._root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        except OSError as exc:
            raise CheckoutError(f"{self.description}: cannot copy: {exc.strerror}") from exc
        if content_version(dest) != revision.version:
            self._signature = None  # hash again on the next look, whatever the stat data says
            raise CheckoutError(
                f"{self.description}: changed while being read", code="changed_during_read"
            )
        return dest


if TYPE_CHECKING:

    def _satisfies(source: DirectorySource) -> tuple[PolicySource, Pollable]:
        return source, source
