"""Who is on the other end of a Unix socket: ``SO_PEERCRED`` and ``/proc``, pinned.

:func:`pin_peer` runs when a connection is accepted. It records the process
the kernel names for the socket (``SO_PEERCRED``: pid, uid, gid) together with
what makes that process *that* process - its start time (field 22 of
``/proc/<pid>/stat``) and the identity of its executable (device and inode of
``/proc/<pid>/exe``) - and its selectors (``unix:uid:N``, ``unix:gid:N``,
``unix:supplementary_gid:N``, ``unix:path:/abs/exe``), all read at that moment.

:func:`still_same` runs on every call: a process that exited (its pid perhaps
reused), exec'd another program or changed its user or group ids no longer
matches the pin, and the caller gets nothing. So handing the connected socket
to another process and then exec'ing an entitled binary does not earn that
binary's identity.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import PeerCredentialsError

__all__ = [
    "PeerCredentials",
    "PinnedPeer",
    "peer_credentials",
    "pin_peer",
    "process_identity",
    "still_same",
    "workload_selectors",
]

_UCRED = struct.Struct("3i")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The process that connected, as the kernel recorded it at ``connect()``."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """What tells one process from another that later has the same pid or exe path."""

    start_time: int  # clock ticks after boot, /proc/<pid>/stat field 22
    exe: tuple[int, int] | None  # (st_dev, st_ino) of /proc/<pid>/exe; None if unreadable
    ids: tuple[str, str] = ("", "")  # the Uid: and Gid: lines of /proc/<pid>/status


@dataclass(frozen=True, slots=True)
class PinnedPeer:
    """A connection's peer as it was when the connection was accepted."""

    creds: PeerCredentials
    identity: ProcessIdentity
    selectors: frozenset[str]


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


def _start_time(pid: int, proc: Path) -> int:
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError as exc:
        raise PeerCredentialsError("the peer process is gone", "peer_gone") from exc
    # The command name (field 2) is in parentheses and may hold anything; the
    # fields after the last ')' start with field 3 (state).
    fields = stat[stat.rfind(b")") + 1 :].split()
    try:
        return int(fields[22 - 3])
    except (IndexError, ValueError) as exc:
        raise PeerCredentialsError("unreadable /proc stat", "peer_proc") from exc


def _exe_identity(pid: int, proc: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(proc / str(pid) / "exe")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _status_ids(pid: int, proc: Path) -> tuple[str, str]:
    try:
        status = (proc / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ("", "")
    lines = {line.split(":", 1)[0]: line for line in status.splitlines() if ":" in line}
    return (lines.get("Uid", ""), lines.get("Gid", ""))


def process_identity(pid: int, proc: Path = PROC) -> ProcessIdentity:
    """The start time, executable and user/group ids of ``pid`` now."""
    return ProcessIdentity(_start_time(pid, proc), _exe_identity(pid, proc), _status_ids(pid, proc))


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


def workload_selectors(creds: PeerCredentials, proc: Path = PROC) -> frozenset[str]:
    """The selectors of the workload behind ``creds``, as ``/proc`` tells them now."""
    selectors = {f"unix:uid:{creds.uid}", f"unix:gid:{creds.gid}"}
    selectors.update(f"unix:supplementary_gid:{g}" for g in _supplementary_gids(creds.pid, proc))
    exe = _executable(creds.pid, proc)
    if exe is not None:
        selectors.add(f"unix:path:{exe}")
    return frozenset(selectors)


def pin_peer(sock: Any, proc: Path = PROC) -> PinnedPeer:
    """Pin the peer of a freshly accepted Unix-socket connection.

    The process identity is read before and after the selectors: if the pid
    changed hands or the process exec'd in between, the pin is refused.
    """
    creds = peer_credentials(sock)
    before = process_identity(creds.pid, proc)
    selectors = workload_selectors(creds, proc)
    if process_identity(creds.pid, proc) != before:
        raise PeerCredentialsError("the peer process changed while it was read", "peer_changed")
    return PinnedPeer(creds, before, selectors)


def still_same(pinned: PinnedPeer, proc: Path = PROC) -> bool:
    """Whether the pinned process still runs, with the same start time, executable and ids."""
    try:
        return process_identity(pinned.creds.pid, proc) == pinned.identity
    except PeerCredentialsError:
        return False
