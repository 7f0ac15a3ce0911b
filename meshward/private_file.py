"""Files only their owner may read (keys, SVIDs, passphrases), written atomically.

One way to put a secret on disk, used by the CA (keys, its state, SVID files)
and the node agent (its node SVID): a fresh temporary file beside the target,
mode 0600 from the start, flushed to disk, then renamed over the target, so a
reader sees the old file or the new one, never a part, and never a
group- or world-readable one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_private_file"]


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
