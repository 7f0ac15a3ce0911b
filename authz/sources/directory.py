"""A policy source that is a directory on disk, watched for changes.

The version is a hash of every file's relative path and content, so the same
files always give the same version wherever they live. Entries whose name
starts with a dot (``.git``, ``.github``) are not part of the bundle.

A revision is materialised by copying the files and hashing the copy: if the
directory changed in between, the copy is refused (``CheckoutError`` with code
``changed_during_read``) and the next look picks up the new content.

Only regular files are read. A symbolic link (to a file or a directory) or any
other special file inside the directory is never followed: the version names
it, and materialising that version is refused (``Rejected``, stage
``checkout``, one ``symlink`` or ``not-a-file`` problem per entry), so a link
to ``/etc/shadow`` or ``/dev/zero`` can neither be read nor shown. Files are
opened with ``O_NOFOLLOW``, so a file swapped for a link between the walk and
the read is refused too. The directory itself may be a link (it is the
operator's configuration).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from authz.errors import Problem
from authz.sources.errors import CheckoutError, FetchError, Rejected
from authz.sources.protocol import PolicySource, Pollable, Revision

__all__ = ["DirectorySource", "content_version"]

_HASH_PREFIX = "sha256:"


class _NotRegular(OSError):
    """A path that is not a regular file (a link, a FIFO, a device)."""


@dataclass
class _Walk:
    files: list[Path] = field(default_factory=list)  # regular files
    refused: list[tuple[Path, str]] = field(default_factory=list)  # (path, problem code)


def _walk(root: Path) -> _Walk:
    """The bundle's regular files and the entries refused, never following a link."""
    found = _Walk()
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            if os.path.islink(os.path.join(dirpath, name)):
                found.refused.append((Path(dirpath, name), "symlink"))
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                found.files.append(path)
            else:
                found.refused.append((path, "symlink" if stat.S_ISLNK(mode) else "not-a-file"))
    return found


def _read(path: Path) -> bytes:
    """A regular file's bytes; a link or special file raises :class:`_NotRegular`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise _NotRegular(f"{path}: a symbolic link") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise _NotRegular(f"{path}: not a regular file")
        return handle.read()


def content_version(root: Path) -> str:
    """The content hash of the bundle files under ``root`` (``sha256:`` and 24 hex digits).

    A refused entry (a link, a special file) contributes its name, never content.
    """
    digest = hashlib.sha256()
    walk = _walk(root)
    for path in walk.files:
        rel = path.relative_to(root).as_posix().encode()
        data = _read(path)
        digest.update(len(rel).to_bytes(8, "big") + rel)
        digest.update(len(data).to_bytes(8, "big") + data)
    for path, code in walk.refused:
        rel = path.relative_to(root).as_posix().encode()
        digest.update(b"refused\0" + code.encode() + b"\0" + rel + b"\0")
    return _HASH_PREFIX + digest.hexdigest()[:24]


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
        walk = _walk(self._root)
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
            walk = _walk(self._root)
            refused = [
                Problem(path.relative_to(self._root).as_posix(), 1, 1, code, _REFUSED[code])
                for path, code in walk.refused
            ]
            if refused:
                raise Rejected(refused, stage="checkout")
            for path in walk.files:
                target = dest / path.relative_to(self._root)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_read(path))
        except _NotRegular as exc:
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
