"""Listening sockets, opened before a server starts so a taken port is one clear error.

:func:`listen` binds and listens (``SO_REUSEADDR``; ``SO_REUSEPORT`` only for
workers that share a port on purpose) and raises :class:`AddressInUse` for a
taken address. :func:`ensure_free` checks addresses a process is about to
bind, all of them, before anything starts.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from meshward.settings import parse_hostport

__all__ = ["AddressInUse", "ensure_free", "listen"]


class AddressInUse(OSError):
    """``addr`` cannot be bound; ``what`` names the listener, ``flag`` the option that moves it."""

    def __init__(self, addr: str, what: str, flag: str, reason: str) -> None:
        super().__init__(f"{what} cannot listen on {addr}: {reason}")
        self.addr = addr
        self.what = what
        self.flag = flag
        self.reason = reason

    def one_line(self) -> str:
        """The message users see: the port, the reason, and the flag to change it."""
        hint = f"; choose another with {self.flag} HOST:PORT" if self.flag else ""
        return f"{self.what}: cannot listen on {self.addr}: {self.reason}{hint}"


def listen(addr: str, *, reuse_port: bool = False, what: str = "", flag: str = "") -> socket.socket:
    """A non-blocking TCP socket bound to ``addr`` (``HOST:PORT``) and listening."""
    host, port = parse_hostport(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise AddressInUse(addr, what or "server", flag, reason or str(exc)) from exc
    sock.setblocking(False)
    return sock


def ensure_free(listeners: Iterable[tuple[str, str, str]]) -> None:
    """Raise :class:`AddressInUse` for the first ``(addr, what, flag)`` that cannot be bound."""
    for addr, what, flag in listeners:
        listen(addr, what=what, flag=flag).close()
