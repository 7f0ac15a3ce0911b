"""The version of a policy directory: one hash, wherever it is computed.

``meshward policy validate``, ``meshward check`` and the running PDP (a
directory source) all name a directory's policies by :func:`content_version`:
a hash of every file's relative path and content (entries whose name starts
with a dot, such as ``.git``, are not part of the bundle), so the same files
give the same version wherever they live. A Git source names a version by
its commit SHA instead.

Only regular files are read, and never through a link: :func:`walk_bundle`
does not follow symbolic links (to files or directories) and sets them and
any special file (FIFO, socket, device) aside as refused, and
:func:`read_regular` opens with ``O_NOFOLLOW``. A refused entry contributes
its name to the version, never content.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BundleWalk",
    "NotRegularFile",
    "bundle_files",
    "content_version",
    "read_regular",
    "walk_bundle",
]

_HASH_PREFIX = "sha256:"


class NotRegularFile(OSError):
    """A path that is not a regular file (a link, a FIFO, a device)."""


@dataclass
class BundleWalk:
    """The regular files of a bundle directory and the entries set aside."""

    files: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)  # (path, "symlink"|"not-a-file")


def walk_bundle(root: Path) -> BundleWalk:
    """The bundle's regular files and refused entries, sorted, never following a link."""
    found = BundleWalk()
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


def bundle_files(root: Path) -> list[Path]:
    """The bundle's regular files (links and special files are not among them)."""
    return walk_bundle(root).files


def read_regular(path: Path) -> bytes:
    """A regular file's bytes; a link or special file raises :class:`NotRegularFile`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegularFile(f"{path}: a symbolic link") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotRegularFile(f"{path}: not a regular file")
        return handle.read()


def content_version(root: Path) -> str:
    """The content hash of the bundle files under ``root`` (``sha256:`` and 24 hex digits)."""
    digest = hashlib.sha256()
    walk = walk_bundle(root)
    for path in walk.files:
        rel = path.relative_to(root).as_posix().encode()
        data = read_regular(path)
        digest.update(len(rel).to_bytes(8, "big") + rel)
        digest.update(len(data).to_bytes(8, "big") + data)
    for path, code in walk.refused:
        rel = path.relative_to(root).as_posix().encode()
        digest.update(b"refused\0" + code.encode() + b"\0" + rel + b"\0")
    return _HASH_PREFIX + digest.hexdigest()[:24]
