"""Loopback helpers for tests that run real servers."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

from tests.support.wait import eventually

__all__ = ["free_port", "wait_for_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
    process: subprocess.Popen[Any] | None = None,
) -> None:
    """Block until something accepts connections on ``host:port``.

    The default ``timeout`` is generous: a server that imports a lot can take
    many seconds to start on a loaded machine. With ``process``, fail at once
    if it exits first.
    """

    def listening() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited ({process.returncode}) before {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    eventually(listening, timeout, 0.05, f"something listening on {host}:{port}")
