"""The agent's CA client talks only to the CA: a server with another SPIFFE ID is refused."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.ca_client import CaClient
from agent.errors import CaUnavailable
from agent.model import Entry
from agent.node import build_csr
from meshward.clock import SystemClock
from meshward.spiffe import SpiffeId, TrustDomain
from tests.support.authority import LocalAuthority
from tests.support.net import free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        body = b'{"keys": []}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@contextlib.asynccontextmanager
async def _server(tmp: Path, authority: LocalAuthority, spiffe_id: str) -> AsyncIterator[int]:
    """A TLS server with a certificate from ``authority`` for ``spiffe_id``; counts requests."""
    key = ec.generate_private_key(ec.SECP256R1())
    entry = Entry("srv", SpiffeId.parse(spiffe_id), frozenset())
    chain = await authority.sign_x509(entry, build_csr(entry, key), None)
    pem = tmp / f"{abs(hash(spiffe_id))}.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    _Handler.requests = 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def authority() -> LocalAuthority:
    return LocalAuthority(SystemClock())


@pytest.mark.parametrize(
    ("server_id", "refused"),
    [
        # Same trust bundle, but not the CA's SPIFFE ID: never talked to.
        ("spiffe://example.org/impostor", True),
        # The CA's ID: the conversation goes on (this fake CA then answers nonsense).
        ("spiffe://example.org/meshward/ca", False),
    ],
)
async def test_server_identity_is_checked(
    tmp_path: Path, authority: LocalAuthority, server_id: str, refused: bool
) -> None:
    async with _server(tmp_path, authority, server_id) as port:
        client = CaClient(
            f"https://127.0.0.1:{port}",
            TrustDomain("example.org"),
            authority.root.public_bytes(serialization.Encoding.PEM),
            tmp_path / "agent",
            SystemClock(),
            lambda: "a-join-token",
        )
        try:
            with pytest.raises(CaUnavailable) as err:
                await client.fetch_bundle()
        finally:
            await client.aclose()
        if refused:
            assert err.value.code == "ca_identity"
            # Refused at the handshake: no request (and no token) ever reached it.
            assert _Handler.requests == 0
        else:
            assert err.value.code != "ca_identity"
            assert _Handler.requests > 0


async def test_untrusted_server_is_unavailable(tmp_path: Path, authority: LocalAuthority) -> None:
    other = LocalAuthority(SystemClock())
    async with _server(tmp_path, other, "spiffe://example.org/meshward/ca") as port:
        client = CaClient(
            f"https://127.0.0.1:{port}",
            TrustDomain("example.org"),
            authority.root.public_bytes(serialization.Encoding.PEM),
            tmp_path / "agent",
            SystemClock(),
            lambda: "t",
        )
        try:
            with pytest.raises(CaUnavailable):
                await client.fetch_bundle()
        finally:
            await client.aclose()
