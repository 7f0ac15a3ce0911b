from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ca.agent.errors import PeerCredentialsError
from ca.agent.peer import PeerCredentials, peer_credentials, workload_selectors


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
