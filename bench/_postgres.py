"""A real PostgreSQL of the test's own: ``initdb`` in a temp dir, a free loopback port.

The tests run as root and PostgreSQL refuses to, so the cluster belongs to
``nobody`` and the server runs under ``setpriv``. Password authentication
(SCRAM) is on, so the URLs carry a password as production ones do.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench._harness import free_port

__all__ = ["PG_BIN", "PostgresServer", "postgres_server"]


def _pg_bin() -> Path:
    """The newest Debian PostgreSQL's programs (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
USER = "meshward"


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


@dataclass
class PostgresServer:
    """One ``postgres`` process; :meth:`kill`/:meth:`start` for outage tests."""

    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL is not installed; run `make system-deps`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.workdir / "pw"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "nobody", "nogroup")
            shutil.chown(pwfile, "nobody", "nogroup")
        pwfile.chmod(0o600)
        subprocess.run(
            [
                *_as_nobody(), str(PG_BIN / "initdb"),
                "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "-E", "UTF8", "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        pwfile.unlink()

    def start(self) -> None:
        # fsync off (nothing here outlives the machine), but every commit is written
        # before it returns (synchronous_commit stays on): a killed postmaster loses
        # no committed row, as with a real server, so outage tests see what users see.
        self.process = subprocess.Popen(
            [
                *_as_nobody(), str(PG_BIN / "postgres"),
                "-D", str(self.data), "-p", str(self.port), "-k", str(self.workdir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "shared_buffers=32MB",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("postgres did not start") from None
                time.sleep(0.1)

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode("ascii"))
        return self.url(name)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (its backends exit with it)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
            # The backends notice the dead postmaster and exit; a new postmaster
            # refuses to start while any is still attached to the old shared memory
            # (a killed postmaster leaves its lock file behind, so that says nothing).
            deadline = time.monotonic() + 10
            while self._old_backends_attached() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _old_backends_attached(self) -> bool:
        """Whether processes still use the shared memory the lock file names."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            shmid = lines[6].split()[1]  # the "key shmid" line
            table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        except (OSError, IndexError):
            return False
        for row in table:
            fields = row.split()
            if fields[1] == shmid:
                return int(fields[6]) > 0  # nattch
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: smart shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


@contextmanager
def postgres_server(workdir: Path | None = None) -> Iterator[PostgresServer]:
    """A running server in a directory ``nobody`` can reach (tmp_path is root's)."""
    own = workdir is None
    root = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="meshward-pg-"))
    server = PostgresServer(root)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)
