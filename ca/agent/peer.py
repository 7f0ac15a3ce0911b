"""Who is on the other end of a Unix socket: ``SO_PEERCRED`` and ``/proc``.

:func:`workload_selectors` turns the kernel's answer into the selectors that
registration entries name: ``unix:uid:N``, ``unix:gid:N``,
``unix:supplementary_gid:N`` and ``unix:path:/abs/exe`` (the last two only when
``/proc`` tells; a workload that exits races us and just gets fewer selectors).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ca.agent.errors import PeerCredentialsError

__all__ = ["PeerCredentials", "peer_credentials", "workload_selectors"]

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The process that connected, as the kernel recorded it at ``connect()``."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials:
    """Read ``SO_PEERCRED`` from a connected Unix socket (or asyncio's wrapper of one)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        raise PeerCredentialsError("peer credentials are not available on this socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as exc:
        raise PeerCredentialsError("cannot read SO_PEERCRED") from exc
    pid, uid, gid = _UCRED.unpack(raw)
    if pid <= 0:
        raise PeerCredentialsError("the peer has no process (not a local Unix socket)")
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def _supplementary_gids(pid: int, proc: Path) -> list[int]:
    try:
        status = (proc / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("Groups:"):
            return [int(g) for g in line.split()[1:] if g.isdigit()]
    return []


def _executable(pid: int, proc: Path) -> str | None:
    try:
        return str((proc / str(pid) / "exe").readlink())
    except OSError:
        return None


def workload_selectors(creds: PeerCredentials, proc: Path = Path("/proc")) -> frozenset[str]:
    """The selectors of the workload behind ``creds``."""
    selectors = {f"unix:uid:{creds.uid}", f"unix:gid:{creds.gid}"}
    selectors.update(f"unix:supplementary_gid:{g}" for g in _supplementary_gids(creds.pid, proc))
    exe = _executable(creds.pid, proc)
    if exe is not None:
        selectors.add(f"unix:path:{exe}")
    return frozenset(selectors)
