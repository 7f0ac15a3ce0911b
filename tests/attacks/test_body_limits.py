"""Request bodies past the limit are refused before they are read whole.

The decision API once buffered a whole body before looking at its size, so
a client could hold any amount of the PDP's memory, or hold a worker by
never finishing its body. Here the client stops sending mid-body and waits:
the PDP must already have answered 413 — for a chunked body as soon as it
passed the limit, for an announced ``Content-Length`` over the limit at once.
"""

from __future__ import annotations

import contextlib
import socket

from authz.adapters.http import MAX_BODY
from tests.support.pdp import PdpProcess


def _answer_while_body_unfinished(port: int, head: bytes, body: bytes) -> bytes:
    """Send the request head and part of a body, never the rest; the status line back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head)
        with contextlib.suppress(OSError):  # the PDP may stop reading before we finish
            conn.sendall(body)
        return conn.recv(4096).split(b"\r\n", 1)[0]


def test_a_chunked_body_past_the_limit_is_refused_before_it_ends(attack_pdp: PdpProcess) -> None:
    head = (
        b"POST /v1/authorize HTTP/1.1\r\nHost: pdp\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    one = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    body = one * (MAX_BODY // len(chunk) + 2)  # past the limit, and no final 0-chunk
    status = _answer_while_body_unfinished(attack_pdp.http_port, head, body)
    assert status == b"HTTP/1.1 413 Request Entity Too Large"


def test_a_body_announced_too_large_is_refused_unread(attack_pdp: PdpProcess) -> None:
    head = (
        b"POST /v1/authorize HTTP/1.1\r\nHost: pdp\r\ncontent-type: application/json\r\n"
        + f"content-length: {MAX_BODY + 1}\r\n\r\n".encode()
    )
    status = _answer_while_body_unfinished(attack_pdp.http_port, head, b"{}")
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
