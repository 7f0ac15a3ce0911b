"""A response's writes made in one step of the event loop leave as one write (one TLS record)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ca.server import _CoalescedWrites


class _Counted:
    """A real transport, its writes counted."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def _pair() -> tuple[_Counted, socket.socket]:
    ours, peer = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _protocol = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    peer.setblocking(False)
    return _Counted(transport), peer


def _received(peer: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out + b"<eof>"
        out += chunk


async def test_writes_of_one_step_leave_as_one_write_in_order() -> None:
    counted, peer = await _pair()
    writes = _CoalescedWrites(counted, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    writes.write(b"body")
    assert _received(peer) == b""  # nothing before the step that wrote ends
    await asyncio.sleep(0.05)
    assert _received(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"
    assert counted.writes == 1
    writes.write(b"next")
    await asyncio.sleep(0.05)
    assert _received(peer) == b"next" and counted.writes == 2
    writes.close()
    peer.close()


async def test_close_writes_what_is_pending_first() -> None:
    counted, peer = await _pair()
    writes = _CoalescedWrites(counted, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"last ")
    writes.write(b"answer")
    writes.close()
    await asyncio.sleep(0.05)
    assert writes.is_closing()
    assert _received(peer) == b"last answer<eof>"
    assert counted.writes == 1
    peer.close()


async def test_nothing_is_written_to_a_closed_transport() -> None:
    counted, peer = await _pair()
    writes = _CoalescedWrites(counted, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"late")
    counted.transport.close()  # the peer went away: the connection closed under us
    await asyncio.sleep(0.05)
    assert counted.writes == 0
    peer.close()
