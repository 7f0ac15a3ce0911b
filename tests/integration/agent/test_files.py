"""File mode: the three files always form one version; hooks run after each write."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from agent.files import DATA_LINK, FileSink, FileSinkConfig
from tests.integration.agent.conftest import RunningAgent
from tests.support.wait import eventually_async


def read_pair(directory: Path) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """What a reader sees at one instant: resolve ..data once, read both files."""
    version = Path(os.path.realpath(directory / DATA_LINK))
    cert = x509.load_pem_x509_certificates((version / "svid.pem").read_bytes())[0]
    key = serialization.load_pem_private_key((version / "svid_key.pem").read_bytes(), None)
    return cert, key


async def test_files_written_with_modes(running_agent: RunningAgent, short_tmp: Path) -> None:
    out = short_tmp / "svid"
    sink = FileSink(running_agent.agent.hub, FileSinkConfig(out, "spiffe://example.org/web"))
    await sink.start()
    try:
        await eventually_async(lambda: sink.writes >= 1)
        cert, key = read_pair(out)
        held = running_agent.agent.hub.current.svid_by_id("spiffe://example.org/web")
        assert held is not None and cert.serial_number == held.serial
        assert key.public_key() == cert.public_key()
        assert stat.S_IMODE(os.stat(out / "svid_key.pem").st_mode) == 0o600
        bundle = x509.load_pem_x509_certificates((out / "bundle.pem").read_bytes())
        assert bundle == [running_agent.authority.root]
        # The names programs open are there and readable directly too.
        assert (out / "svid.pem").read_bytes() == held.chain_pem
    finally:
        await sink.stop()


async def _rotate_and_write(running_agent: RunningAgent, sink: FileSink) -> None:
    before = sink.writes
    running_agent.agent.rotate_now()
    await eventually_async(lambda: sink.writes > before, message="the rotated SVID written")


async def test_reader_never_sees_a_torn_pair(running_agent: RunningAgent, short_tmp: Path) -> None:
    out = short_tmp / "svid"
    sink = FileSink(running_agent.agent.hub, FileSinkConfig(out))
    await sink.start()
    await eventually_async(lambda: sink.writes >= 1)
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]
    serials: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            try:
                cert, key = read_pair(out)
            except Exception as exc:  # any failure to read a whole version is a defect
                problems.append(repr(exc))
                continue
            if key.public_key() != cert.public_key():
                problems.append(f"mismatch at serial {cert.serial_number:x}")
            serials.add(cert.serial_number)
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(25):
            await _rotate_and_write(running_agent, sink)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
        await sink.stop()
    assert problems == []
    assert reads[0] > 25 and len(serials) > 1
    # Only the current and the previous version remain on disk.
    assert len([p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]) <= 2


async def test_command_and_signal_after_write(running_agent: RunningAgent, short_tmp: Path) -> None:
    out = short_tmp / "svid"
    marker = short_tmp / "marker"
    # A real process that counts SIGHUPs.
    counter = short_tmp / "hups"
    script = (
        "import signal, sys, time, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = [0]\n"
        "def h(*a):\n"
        "    n[0] += 1; p.write_text(str(n[0]))\n"
        "signal.signal(signal.SIGHUP, h)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    await proc.stdout.readline()
    pid_file = short_tmp / "pid"
    pid_file.write_text(str(proc.pid))
    config = FileSinkConfig(
        out,
        command=[sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"],
        signal="SIGHUP",
        pid_file=pid_file,
    )
    sink = FileSink(running_agent.agent.hub, config)
    await sink.start()
    try:
        await eventually_async(lambda: marker.exists() and counter.exists())
        running_agent.agent.rotate_now()
        await eventually_async(lambda: marker.read_text() == "xx" and counter.read_text() == "2")
    finally:
        await sink.stop()
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def test_files_of_a_revoked_svid_are_removed(
    running_agent: RunningAgent, short_tmp: Path
) -> None:
    out = short_tmp / "svid"
    sink = FileSink(running_agent.agent.hub, FileSinkConfig(out, "spiffe://example.org/web"))
    await sink.start()
    try:
        await eventually_async(lambda: sink.writes >= 1)
        assert (out / "svid_key.pem").exists()
        running_agent.authority.entries = [
            e for e in running_agent.authority.entries if e.entry_id != "web"
        ]
        running_agent.agent.wake()
        await eventually_async(lambda: not (out / "svid_key.pem").exists())
        # The links go first, then (in the same removal) the versions they
        # pointed to: wait for that to finish, not just for the first unlink.
        await eventually_async(lambda: not [p for p in out.iterdir() if p.name.startswith("..")])
    finally:
        await sink.stop()


async def test_a_partial_snapshot_removes_nothing(
    running_agent: RunningAgent, short_tmp: Path
) -> None:
    out = short_tmp / "svid"
    hub = running_agent.agent.hub
    sink = FileSink(hub, FileSinkConfig(out, "spiffe://example.org/web"))
    await sink.start()
    try:
        await eventually_async(lambda: sink.writes >= 1)
        # Mid-pass (e.g. a restarted agent's first pass): the SVID may still come.
        hub.publish(hub.current.bundle, (), partial=True)
        await asyncio.sleep(0.2)
        assert (out / "svid_key.pem").exists()
        hub.publish(hub.current.bundle, ())  # a whole pass without it
        await eventually_async(lambda: not (out / "svid_key.pem").exists())
    finally:
        await sink.stop()
