"""The version of a policy directory: one hash, wherever it is computed.

``meshward policy validate``, ``meshward check`` and the running PDP (a
directory source) all name a directory's policies by :func:`content_version`:
a hash of every file's relative path and content (entries whose name starts
with a dot, such as ``.git``, are not part of the bundle), so the same files
give the same version wherever they live. A Git source names a version by
its commit SHA instead.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["bundle_files", "content_version"]

_HASH_PREFIX = "sha256:"


def bundle_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath, name))
    return out


def content_version(root: Path) -> str:
    """The content hash of the bundle files under ``root`` (``sha256:`` and 24 hex digits)."""
    digest = hashlib.sha256()
    for path in bundle_files(root):
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        digest.update(len(rel).to_bytes(8, "big") + rel)
        digest.update(len(data).to_bytes(8, "big") + data)
    return _HASH_PREFIX + digest.hexdigest()[:24]
