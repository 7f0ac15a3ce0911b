"""What every real-proxy harness shares: where the proxy points, and one way to run it.

A harness (``tests/support/{nginx,traefik,caddy,haproxy}.py``) renders the
proxy's config from ``deploy/<proxy>/`` for a :class:`Target`, then runs the
real binary with :func:`run_proxy`: the config is checked first (the proxy's
own check command), the process logs to a file in its work directory, and it
counts as started once it accepts connections on every port it was given.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proxy", "ProxyError", "Target", "run_proxy"]


class ProxyError(RuntimeError):
    """The proxy's config check failed, or the proxy did not come up."""


@dataclass(frozen=True)
class Target:
    """What a proxy is put in front of."""

    pdp: str  # the PDP's HTTP address, host:port
    upstream_port: int
    host: str  # the virtual host the proxy serves: the Cedar resource


@dataclass(frozen=True)
class Proxy:
    """A running proxy: its plain HTTP listener and where it keeps its files."""

    name: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def run_proxy(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    ports: Sequence[int],
    check: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[Proxy]:
    """Run ``argv`` until the block ends; ``ports[0]`` is the plain HTTP listener."""
    full_env = {**os.environ, **(env or {})}
    if check is not None:
        done = subprocess.run(
            check, capture_output=True, text=True, env=full_env, cwd=workdir, timeout=60,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ProxyError(f"{name} config check failed:\n{done.stdout}{done.stderr}")
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=full_env, cwd=workdir
        )
    proxy = Proxy(name, ports[0], workdir, process)
    try:
        deadline = time.monotonic() + timeout
        waiting = list(ports)
        while waiting:
            if process.poll() is not None:
                raise ProxyError(f"{name} exited with {process.returncode}:\n{proxy.log()}")
            if time.monotonic() > deadline:
                raise ProxyError(f"{name} did not listen on {waiting}:\n{proxy.log()}")
            if _accepts(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(0.05)
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
