"""A tiny real HTTP upstream that echoes the request target and headers it received,
and a raw HTTP/1.1 client that sends a request target byte for byte.

Proxies in front of the upstream are tested on what actually arrives: the
request target exactly as the proxy sent it (no decoding, no normalising) and
every header line, repeated ones included.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.net import free_port

__all__ = ["Echoed", "RawResponse", "Upstream", "echo_upstream", "raw_request"]


@dataclass(frozen=True)
class Echoed:
    """One request the upstream received."""

    method: str
    target: str  # the request target as sent: path and query, raw
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive), in the order received."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass
class Upstream:
    port: int
    received: list[Echoed] = field(default_factory=list)

    def find(self, marker: str) -> Echoed | None:
        """The request that carried ``x-test-id: marker``, if it arrived."""
        for seen in self.received:
            if marker in seen.header("x-test-id"):
                return seen
        return None


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Echoed(self.command, self.path, tuple(self.headers.items()), body)
            upstream.received.append(seen)
            body = json.dumps(
                {
                    "method": seen.method,
                    "path": seen.target,
                    "headers": dict(seen.headers),
                    "header_lines": [list(h) for h in seen.headers],
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _reply

        def log_message(self, format: str, *args: object) -> None:
            return

    return Echo


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a proxy closing a kept-alive connection is not news


@contextmanager
def echo_upstream() -> Iterator[Upstream]:
    """The upstream on a free loopback port, served from a thread."""
    upstream = Upstream(free_port())
    server = _Server(("127.0.0.1", upstream.port), _handler(upstream))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last value of a repeated one
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    port: int,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "GET",
    body: bytes = b"",
    timeout: float = 10.0,
) -> RawResponse:
    """Send ``method target HTTP/1.1`` to 127.0.0.1:``port`` exactly as given.

    ``headers`` are sent in order, repeats included; include ``host``
    (and ``content-length`` with a ``body``).
    (httpx and urllib normalise the path, which is the thing under test.)
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
        body = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()
