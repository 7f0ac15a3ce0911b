"""File mode: ``svid.pem``, ``svid_key.pem`` (0600) and ``bundle.pem`` in a directory.

The three files change together or not at all. Each version is written,
fsynced, into a fresh hidden directory; then one ``rename`` swaps the ``..data``
symlink to it (the way Kubernetes updates secret volumes). The names a program
opens are symlinks through ``..data``, so at every instant the directory holds
one whole version: a reader that resolves ``..data`` once (or opens the files
through ``os.path.realpath(dir / "..data")``) always gets a matching key and
certificate. The previous version's directory is kept until the next write, so
a reader in the middle of a read is not cut off.

After each write the agent can run a command (argv, no shell) or send a signal
to the process whose pid is in a file.

When the agent no longer holds the chosen SVID after a sync (its entry was
deleted, the CA refuses the agent, or it expired during an outage), the files
are removed: a revoked identity's key does not stay on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal as _signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.background import BackgroundTask
from agent.errors import FileWriteError
from agent.hub import SnapshotHub
from agent.model import Bundle, HeldSvid, Snapshot

__all__ = ["DATA_LINK", "FileSink", "FileSinkConfig", "remove_version", "write_version"]

log = logging.getLogger("meshward.agent.files")

DATA_LINK = "..data"
CERT, KEY, BUNDLE = "svid.pem", "svid_key.pem", "bundle.pem"


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(link.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def write_version(directory: Path, svid: HeldSvid, bundle: Bundle) -> Path:
    """Write one version atomically; return its (hidden) directory."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        version = Path(tempfile.mkdtemp(prefix="..", dir=directory))
        version.chmod(0o755)
        _write(version / CERT, svid.chain_pem, 0o644)
        _write(version / KEY, svid.key_pem, 0o600)
        _write(version / BUNDLE, bundle.x509_pem, 0o644)
        dir_fd = os.open(version, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        data = directory / DATA_LINK
        previous = os.readlink(data) if data.is_symlink() else None
        _replace_symlink(data, version.name)
        for name in (CERT, KEY, BUNDLE):
            link = directory / name
            if not (link.is_symlink() and os.readlink(link) == f"{DATA_LINK}/{name}"):
                _replace_symlink(link, f"{DATA_LINK}/{name}")
        # Keep the version just replaced; drop anything older.
        for child in directory.iterdir():
            if (
                child.name.startswith("..")
                and child.name not in (DATA_LINK, version.name, previous)
                and child.is_dir()
                and not child.is_symlink()
            ):
                shutil.rmtree(child, ignore_errors=True)
    except OSError as exc:
        raise FileWriteError(f"cannot write SVID files in {directory}: {exc.strerror}") from exc
    return version


def remove_version(directory: Path) -> bool:
    """Remove the files and every version from ``directory``; return whether any existed."""
    removed = False
    try:
        for name in (CERT, KEY, BUNDLE, DATA_LINK):
            link = directory / name
            if link.is_symlink():
                link.unlink()
                removed = True
        for child in directory.iterdir() if directory.is_dir() else ():
            if child.name.startswith("..") and child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
                removed = True
    except OSError as exc:
        raise FileWriteError(f"cannot remove SVID files in {directory}: {exc.strerror}") from exc
    return removed


@dataclass(frozen=True, slots=True)
class FileSinkConfig:
    directory: Path
    spiffe_id: str | None = None  # which SVID; the first held when None
    command: Sequence[str] = ()  # run after each write
    signal: str | None = None  # e.g. "SIGHUP", sent to the pid in pid_file
    pid_file: Path | None = None
    command_timeout: float = 30.0


class FileSink:
    """Follows the hub and writes the chosen SVID whenever it or the bundle changes."""

    def __init__(self, hub: SnapshotHub, config: FileSinkConfig) -> None:
        self.hub = hub
        self.config = config
        self.writes = 0
        self._task = BackgroundTask(self.run, "meshward-agent-files")

    def _choose(self, snapshot: Snapshot) -> HeldSvid | None:
        if self.config.spiffe_id is None:
            return snapshot.svids[0] if snapshot.svids else None
        return snapshot.svid_by_id(self.config.spiffe_id)

    async def run(self) -> None:
        written: tuple[int, bytes] | None = None
        async for snapshot in self.hub.watch():
            svid = self._choose(snapshot)
            if snapshot.bundle is None:
                continue  # not synced yet: leave what a previous run wrote
            if svid is None:
                if snapshot.partial:
                    continue  # mid-pass: the chosen SVID may still come
                await self._remove()
                written = None
                continue
            state = (svid.serial, snapshot.bundle.x509_der)
            if state == written:
                continue
            try:
                await asyncio.to_thread(write_version, self.config.directory, svid, snapshot.bundle)
            except FileWriteError as exc:
                log.error("file mode write failed", extra={"fields": {"error": str(exc)}})
                continue
            written = state
            self.writes += 1
            log.info(
                "SVID files written",
                extra={
                    "fields": {"dir": str(self.config.directory), "spiffe_id": str(svid.spiffe_id)}
                },
            )
            await self._after_write()

    async def _remove(self) -> None:
        try:
            removed = await asyncio.to_thread(remove_version, self.config.directory)
        except FileWriteError as exc:
            log.error("file mode removal failed", extra={"fields": {"error": str(exc)}})
            return
        if removed:
            log.warning(
                "SVID no longer held (revoked, refused or expired); its files are removed",
                extra={"fields": {"dir": str(self.config.directory)}},
            )

    async def _after_write(self) -> None:
        if self.config.command:
            try:
                proc = await asyncio.create_subprocess_exec(*self.config.command)
                code = await asyncio.wait_for(proc.wait(), self.config.command_timeout)
            except (OSError, TimeoutError) as exc:
                log.error("post-write command failed", extra={"fields": {"error": repr(exc)}})
            else:
                if code != 0:
                    log.error("post-write command failed", extra={"fields": {"exit": code}})
        if self.config.signal and self.config.pid_file:
            try:
                pid = int(self.config.pid_file.read_text().strip())
                os.kill(pid, _signal.Signals[self.config.signal])
            except (OSError, ValueError, KeyError) as exc:
                log.error("post-write signal failed", extra={"fields": {"error": repr(exc)}})

    async def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
