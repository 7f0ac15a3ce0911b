"""One launcher for ``meshward up`` in tests: free ports, a state dir, "ready", Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import REPO, meshward_argv, meshward_env
from tests.support.net import free_port

__all__ = ["Ports", "Up", "running_up", "start_up"]


@dataclass(frozen=True)
class Ports:
    """Where ``up``'s CA, PDP (gRPC and HTTP) and console listen; free ones by default."""

    ca: int = field(default_factory=free_port)
    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    console: int = field(default_factory=free_port)


@dataclass
class Up:
    """A started ``meshward up``: its ports, state dir, environment and combined output."""

    ports: Ports
    state: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[str]

    @property
    def pdp_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.console}"

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 90) -> None:
        """Until ``up`` prints "ready"; fails with its output if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while "ready" not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"meshward up exited {self.process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"meshward up not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C (SIGINT) and wait; killed if it does not stop in time. The exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise
        return self.process.returncode


def start_up(
    tmp: Path,
    *,
    ports: Ports | None = None,
    state: Path | None = None,
    flags: bool = False,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
    session: bool = False,
) -> Up:
    """Start ``meshward up`` with its log in ``tmp/up.log``; does not wait.

    Ports go in as ``MESHWARD_*__ADDR`` settings, or with ``flags`` as ``up``'s
    ``--*-addr`` options (``--state-dir`` then after the subcommand too). The state
    dir is ``state``, else ``tmp/state``; ``env`` adds settings; ``session`` puts it
    in a process group of its own (for a terminal-like Ctrl-C).
    """
    ports = ports or Ports()
    state = state or tmp / "state"
    full = meshward_env()
    addrs = {"ca": ports.ca, "grpc": ports.grpc, "http": ports.http, "console": ports.console}
    if flags:
        argv = ["up", "--state-dir", str(state)]
        for name, port in addrs.items():
            argv += [f"--{name}-addr", f"127.0.0.1:{port}"]
    else:
        argv = ["--state-dir", str(state), "up"]
        settings = {"ca": "CA__ADDR", "grpc": "PDP__GRPC_ADDR", "http": "PDP__HTTP_ADDR"}
        settings["console"] = "CONSOLE__ADDR"
        full.update({f"MESHWARD_{settings[n]}": f"127.0.0.1:{p}" for n, p in addrs.items()})
    full.update(env or {})
    log = tmp / "up.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            meshward_argv(*argv), stdout=sink, stderr=subprocess.STDOUT, text=True,
            env=full, cwd=cwd, start_new_session=session,
        )  # fmt: skip
    return Up(ports, state, full, log, process)


@contextmanager
def running_up(
    tmp: Path,
    *,
    ports: Ports | None = None,
    state: Path | None = None,
    flags: bool = False,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
) -> Iterator[Up]:
    """``meshward up`` started (see :func:`start_up`), ready, and stopped with Ctrl-C after."""
    up = start_up(tmp, ports=ports, state=state, flags=flags, cwd=cwd, env=env)
    try:
        up.wait_ready()
        yield up
    finally:
        up.stop()
