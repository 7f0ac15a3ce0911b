"""A policy source that is a directory on disk, watched for changes.

The version is a hash of every file's relative path and content, so the same
files always give the same version wherever they live. Entries whose name
starts with a dot (``.git``, ``.github``) are not part of the bundle.

A revision is materialised by copying the files and hashing the copy: if the
directory changed in between, the copy is refused (``CheckoutError`` with code
``changed_during_read``) and the next look picks up the new content.

Only regular files are read (:mod:`authz.lifecycle.version`). A symbolic link (to a file
or a directory) or any other special file inside the directory is never
followed: the version names it, and materialising that version is refused
(``Rejected``, stage ``checkout``, one ``symlink`` or ``not-a-file`` problem
per entry), so a link to ``/etc/shadow`` or ``/dev/zero`` can neither be read
nor shown. Files are opened with ``O_NOFOLLOW``, so a file swapped for a link
between the walk and the read is refused too. The directory itself may be a
link (it is the operator's configuration).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from authz.errors import CheckoutError, FetchError, Problem, Rejected
from authz.lifecycle.version import NotRegularFile, content_version, read_regular, walk_bundle
from authz.sources.protocol import PolicySource, Pollable, Revision

__all__ = ["DirectorySource", "content_version"]

_REFUSED = {
    "symlink": "a symbolic link: policy directories hold regular files only; it is not read",
    "not-a-file": "not a regular file (a FIFO, socket or device); it is not read",
}


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
        walk = walk_bundle(self._root)
        for path in [*walk.files, *(p for p, _ in walk.refused)]:
            st = os.lstat(path)
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
            why = exc.strerror or "not a regular file"
            raise FetchError(f"{self.description}: cannot read: {why}") from exc
        return self._revision

    def materialize(self, revision: Revision, dest: Path) -> Path:
        try:
            walk = walk_bundle(self._root)
            refused = [
                Problem(path.relative_to(self._root).as_posix(), 1, 1, code, _REFUSED[code])
                for path, code in walk.refused
            ]
            if refused:
                raise Rejected(refused, stage="checkout")
            for path in walk.files:
                target = dest / path.relative_to(self._root)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(read_regular(path))
        except NotRegularFile as exc:
            self._signature = None  # look again: the file changed into a link or special file
            raise CheckoutError(
                f"{self.description}: a file turned into a link while being read",
                code="changed_during_read",
            ) from exc
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
