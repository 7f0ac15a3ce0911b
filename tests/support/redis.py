"""A real ``redis-server`` of the test's own, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, wait_for_port

__all__ = ["RedisServer", "redis_server"]


@dataclass
class RedisServer:
    """One ``redis-server`` process; :meth:`kill` and :meth:`start` for outage tests."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run `make system-deps`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL, as an outage would; no clean shutdown."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def restart(self, pause: float = 0.0) -> None:
        self.kill()
        time.sleep(pause)
        self.start()


@contextmanager
def redis_server(workdir: Path, *extra_args: str) -> Iterator[RedisServer]:
    server = RedisServer(workdir, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
