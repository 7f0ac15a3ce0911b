from __future__ import annotations

import os
import shutil
import socket
import struct
from pathlib import Path

import pytest

from agent.errors import PeerCredentialsError
from agent.peer import (
    PeerCredentials,
    peer_credentials,
    pin_peer,
    still_same,
    workload_selectors,
)


def test_peer_credentials_of_a_real_unix_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        creds = peer_credentials(left)
    assert creds == PeerCredentials(os.getpid(), os.getuid(), os.getgid())


def test_peer_credentials_refuses_tcp_and_none() -> None:
    with pytest.raises(PeerCredentialsError):
        peer_credentials(None)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client, conn, pytest.raises(PeerCredentialsError):
            peer_credentials(conn)


def test_selectors_of_this_process_from_real_proc() -> None:
    creds = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    selectors = workload_selectors(creds)
    assert f"unix:uid:{os.getuid()}" in selectors
    assert f"unix:gid:{os.getgid()}" in selectors
    assert f"unix:path:{os.path.realpath('/proc/self/exe')}" in selectors


def test_selectors_from_a_proc_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "status").write_text("Name:\tweb\nUid:\t1000\nGroups:\t4 27 1000\n")
    (proc / "42" / "exe").symlink_to("/usr/bin/web")
    selectors = workload_selectors(PeerCredentials(42, 1000, 1000), proc)
    assert selectors == {
        "unix:uid:1000",
        "unix:gid:1000",
        "unix:supplementary_gid:4",
        "unix:supplementary_gid:27",
        "unix:supplementary_gid:1000",
        "unix:path:/usr/bin/web",
    }


def test_selectors_when_the_process_is_gone(tmp_path: Path) -> None:
    selectors = workload_selectors(PeerCredentials(77, 5, 6), tmp_path)
    assert selectors == {"unix:uid:5", "unix:gid:6"}


def _fake_process(proc: Path, pid: int, start: int, exe: Path, uid: int = 1000) -> None:
    (proc / str(pid)).mkdir(parents=True, exist_ok=True)
    # A command name with spaces and a ')' must not shift the fields.
    fields = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10
    (proc / str(pid) / "stat").write_text(f"{pid} (we) ird) " + " ".join(fields) + "\n")
    ids = f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t1000\t1000\t1000\t1000\n"
    (proc / str(pid) / "status").write_text(ids + "Groups:\t7\n")
    link = proc / str(pid) / "exe"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(exe)


class _Sock:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def getsockopt(self, *_: object) -> bytes:
        return struct.pack("3i", self.pid, 1000, 1000)


def test_pin_then_exec_or_pid_reuse_is_noticed(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    python, sleep = tmp_path / "python", tmp_path / "sleep"
    python.write_text("a")
    sleep.write_text("b")
    _fake_process(proc, 42, 5000, python)
    pinned = pin_peer(_Sock(42), proc)
    assert pinned.identity.start_time == 5000
    assert pinned.selectors >= {"unix:uid:1000", "unix:supplementary_gid:7"}
    assert f"unix:path:{python}" in pinned.selectors
    assert still_same(pinned, proc)
    _fake_process(proc, 42, 5000, sleep)  # the same process exec'd another program
    assert not still_same(pinned, proc)
    _fake_process(proc, 42, 5000, python, uid=0)  # ... or changed its uid
    assert not still_same(pinned, proc)
    _fake_process(proc, 42, 9000, python)  # the pid was reused by a new process
    assert not still_same(pinned, proc)
    shutil.rmtree(proc / "42")  # gone
    assert not still_same(pinned, proc)


def test_a_gone_peer_cannot_be_pinned(tmp_path: Path) -> None:
    with pytest.raises(PeerCredentialsError) as caught:
        pin_peer(_Sock(77), tmp_path)
    assert caught.value.code == "peer_gone"


def test_pin_this_process_from_real_proc() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        pinned = pin_peer(left)
    st = os.stat("/proc/self/exe")
    assert pinned.identity.exe == (st.st_dev, st.st_ino)
    assert still_same(pinned)
