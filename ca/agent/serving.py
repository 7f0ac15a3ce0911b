"""The agent's gRPC listeners (grpclib): who is calling, and how much a message may be.

Both the Workload API and SDS run on :func:`start_server`, and both ask one
:class:`Attestor` who the caller is:

- :class:`UnixAttestor` pins the peer of every Unix-socket connection when it
  is accepted (:func:`ca.agent.peer.pin_peer`) and, on every call, checks that
  the process is still that one (:func:`ca.agent.peer.still_same`); a process
  that is gone or exec'd another program gets ``PERMISSION_DENIED``.
- :class:`FixedAttestor` is for a loopback TCP listener (SDS only): every
  caller is treated as having exactly the configured selectors.

grpclib sets no limit on an incoming message; :func:`recv_bounded` reads the
5-byte gRPC length prefix itself and refuses a message above
:data:`MAX_MESSAGE_BYTES` (``RESOURCE_EXHAUSTED``) before buffering its body;
HTTP/2 flow control then holds the sender to one window.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from google.protobuf.message import DecodeError
from grpclib import GRPCError
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.server import Server, Stream

from ca.agent.errors import PeerCredentialsError
from ca.agent.peer import PROC, PinnedPeer, pin_peer, still_same
from meshward.callers import is_loopback_host

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Attestor",
    "Caller",
    "FixedAttestor",
    "UnixAttestor",
    "recv_bounded",
    "start_server",
]

log = logging.getLogger("meshward.agent.peer")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_Msg = TypeVar("_Msg")


@dataclass(frozen=True, slots=True)
class Caller:
    """An attested caller: its selectors, and the key its requests are limited and queued by."""

    selectors: frozenset[str]
    key: str


class Attestor(Protocol):
    """Identifies the caller of a gRPC call; raises ``GRPCError(PERMISSION_DENIED)``."""

    def connected(self, transport: asyncio.BaseTransport) -> None: ...

    def disconnected(self, transport: asyncio.BaseTransport) -> None: ...

    def caller(self, stream: Stream[Any, Any]) -> Caller: ...


def _transport(stream: Stream[Any, Any]) -> object:
    # grpclib's Peer exposes only addr() and cert(); the connection's transport
    # (the key of the pin) is read without changing it.
    return getattr(stream.peer, "_transport", None)


def _denied() -> GRPCError:
    return GRPCError(Status.PERMISSION_DENIED, "caller cannot be identified")


class UnixAttestor:
    """Pins each connection's peer at accept; checks it is unchanged on each call."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self._pins: dict[object, PinnedPeer | PeerCredentialsError] = {}

    def connected(self, transport: asyncio.BaseTransport) -> None:
        try:
            self._pins[transport] = pin_peer(transport.get_extra_info("socket"), self.proc)
        except PeerCredentialsError as exc:
            self._pins[transport] = exc

    def disconnected(self, transport: asyncio.BaseTransport) -> None:
        self._pins.pop(transport, None)

    def caller(self, stream: Stream[Any, Any]) -> Caller:
        pin = self._pins.get(_transport(stream))
        if not isinstance(pin, PinnedPeer):
            code = pin.code if pin is not None else "peer_unpinned"
            log.warning("cannot identify a caller", extra={"fields": {"code": code}})
            raise _denied()
        if not still_same(pin, self.proc):
            log.warning(
                "caller process changed since it connected (exited or exec'd); denied",
                extra={"fields": {"pid": pin.creds.pid, "uid": pin.creds.uid}},
            )
            raise _denied()
        return Caller(pin.selectors, f"uid:{pin.creds.uid}")


class FixedAttestor:
    """Every caller has exactly ``selectors`` (a loopback TCP listener has no peer credentials)."""

    def __init__(self, selectors: Collection[str]) -> None:
        self._caller = Caller(frozenset(selectors), "tcp")

    def connected(self, transport: asyncio.BaseTransport) -> None:
        return None

    def disconnected(self, transport: asyncio.BaseTransport) -> None:
        return None

    def caller(self, stream: Stream[Any, Any]) -> Caller:
        return self._caller


async def recv_bounded(stream: Stream[_Msg, Any], limit: int = MAX_MESSAGE_BYTES) -> _Msg | None:
    """The next request message, or ``None`` at the end of the request stream.

    Raises ``RESOURCE_EXHAUSTED`` for a message announced above ``limit`` bytes
    (nothing of its body is read) and ``INVALID_ARGUMENT`` for a malformed one.
    """
    h2 = stream._stream  # grpclib 0.4: the HTTP/2 stream under the gRPC one
    meta = await _read(h2, 5)
    if not meta:
        return None
    compressed, length = struct.unpack(">?I", meta)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not accepted")
    if length > limit:
        raise GRPCError(Status.RESOURCE_EXHAUSTED, f"message larger than {limit} bytes")
    body = await _read(h2, length)
    if len(body) != length:
        raise GRPCError(Status.INVALID_ARGUMENT, "truncated message")
    try:
        message: _Msg = stream._codec.decode(body, stream._recv_type)
    except (DecodeError, ValueError) as exc:
        raise GRPCError(Status.INVALID_ARGUMENT, "malformed message") from exc
    return message


async def _read(h2: Any, size: int) -> bytes:
    """Exactly ``size`` bytes, or ``b""`` at a clean end of stream; a short read is malformed."""
    try:
        data: bytes = await h2.recv_data(size)
    except AssertionError as exc:  # grpclib's report of a stream that ended mid-message
        raise GRPCError(Status.INVALID_ARGUMENT, "truncated message") from exc
    if data and len(data) != size:
        raise GRPCError(Status.INVALID_ARGUMENT, "truncated message")
    return data


class _AttestedProtocol(asyncio.Protocol):
    """grpclib's protocol, with the attestor told of each connection before any byte is read."""

    def __init__(self, inner: asyncio.Protocol, server: _AttestedServer) -> None:
        self._inner = inner
        self._server = server
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._server.connected(transport)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.disconnected(self._transport)
        self._inner.connection_lost(exc)


class _AttestedServer(Server):
    def __init__(self, handlers: Collection[Any], attestor: Attestor) -> None:
        super().__init__(
            handlers,
            config=Configuration(
                http2_connection_window_size=MAX_MESSAGE_BYTES,
                http2_stream_window_size=MAX_MESSAGE_BYTES,
            ),
        )
        self._attestor = attestor
        self._transports: set[asyncio.BaseTransport] = set()

    def connected(self, transport: asyncio.BaseTransport) -> None:
        self._transports.add(transport)
        self._attestor.connected(transport)

    def disconnected(self, transport: asyncio.BaseTransport) -> None:
        self._transports.discard(transport)
        self._attestor.disconnected(transport)

    def _protocol_factory(self) -> Any:
        return _AttestedProtocol(super()._protocol_factory(), self)

    def close(self) -> None:
        """Stop listening, cancel running calls and close every connection."""
        super().close()
        for transport in list(self._transports):
            transport.close()


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise ValueError(f"unknown group {group!r}") from exc


async def start_server(
    handlers: Collection[Any],
    attestor: Attestor,
    *,
    path: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    mode: int = 0o660,
    group: str | None = None,
) -> Server:
    """Serve ``handlers`` on a Unix socket (``path``, given ``mode`` and ``group``) or on a
    loopback ``host``:``port``; return the started server."""
    server = _AttestedServer(handlers, attestor)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        await server.start(path=str(path))
        if group is not None:
            os.chown(path, -1, _group_id(group))
        os.chmod(path, mode)
        return server
    if host is None or port is None or not is_loopback_host(host):
        raise ValueError("a TCP listener of the agent must be on a loopback address")
    await server.start(host.strip("[]"), port)
    return server
