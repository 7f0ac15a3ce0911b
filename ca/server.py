"""Running the CA: wiring from settings, TLS with a server SVID, the rotation task.

uvicorn does not put the client certificate in the ASGI scope, so the HTTP
protocol is a small subclass of uvicorn's httptools protocol (llhttp, the
parser in C that ``uvicorn[standard]`` uses; h11 cost a fifth of the CPU of
an issuance): once the TLS
handshake is done (asyncio calls ``connection_made`` only then) it reads the
peer certificate that OpenSSL already verified against the trust bundle, and
wraps the connection's ASGI app to add the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``). Client certificates
are optional (``CERT_OPTIONAL``): an invalid one fails the handshake, a
missing one leaves the caller anonymous.

``ca serve --workers N`` runs N of these servers (:mod:`ca.supervisor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_der_x509_certificate
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ca.api import create_app
from ca.errors import CaError, StoreUnavailable
from ca.issuance import IPAddress, IssuedX509, build_csr
from ca.keystore import generate_key, write_private_file
from ca.replicas import DbRateLimiter
from ca.service import SERVER_PATH, CertificateAuthority
from ca.store.sqlite import SqliteStore
from meshward.asgi import QuietUvicorn
from meshward.listen import listen
from meshward.settings import parse_hostport
from meshward.spiffe import SpiffeId

__all__ = ["API_THREADS", "CaServer", "PeerCertProtocol", "issues_inline"]

log = logging.getLogger("meshward.ca")

# Threads running the API's blocking work (store, signing) per process. Enough to
# overlap database round trips and audit group commits; more only fight over the GIL.
API_THREADS = 8

ASGIApp = Any


def issues_inline(ca: CertificateAuthority) -> bool:
    """Whether the issuance routes run on the event loop (see :mod:`ca.api`).

    Yes on SQLite: its calls take microseconds and the GIL passing of a
    thread pool costs more. No on PostgreSQL: a round trip would stall every
    connection of the process, so the pool's threads overlap them.
    """
    return isinstance(ca.store, SqliteStore)


class _TlsScope:
    """Adds the ASGI TLS extension with the verified client certificate."""

    def __init__(self, app: ASGIApp, chain_pem: list[str]) -> None:
        self.app = app
        self.tls = {"client_cert_chain": chain_pem, "tls_version": None, "cipher_suite": None}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            # uvicorn builds a new scope per request: adding to it is enough.
            extensions = scope.get("extensions")
            if extensions is None:
                scope["extensions"] = {"tls": self.tls}
            else:
                extensions["tls"] = self.tls
        await self.app(scope, receive, send)


class _CoalescedWrites:
    """A transport whose writes made in one step of the event loop leave as one write.

    uvicorn writes a response's head and its body separately; over TLS each
    write is a TLS record and a system call of its own (and a wake-up of the
    peer). Here they are joined and written once, just after the step that
    made them; ``close`` writes what is pending first. Everything else is the
    wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class PeerCertProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the verified client certificate in the scope.

    Its writes are coalesced (:class:`_CoalescedWrites`): a response is one
    TLS record, not two.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CoalescedWrites(transport, self.loop)  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            pem = load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            self.app = _TlsScope(self.app, [pem.decode("ascii")])


class CaServer:
    """The HTTPS API plus the task that rotates keys and renews the server SVID."""

    def __init__(
        self,
        ca: CertificateAuthority,
        addr: str,
        workdir: Path,
        bundle_file: Path | None = None,
        own_signals: bool = True,
        addr_flag: str = "--addr",
        reuse_port: bool = False,
    ) -> None:
        self.ca = ca
        self.bundle_file = bundle_file
        self.host, self.port = parse_hostport(addr)
        self.workdir = workdir
        self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl.verify_mode = ssl.CERT_OPTIONAL
        self._server_svid: IssuedX509 | None = None
        self._trusted_sequence = -1
        self._steps = 0
        self._refresh_trust()
        self._renew_server_svid()
        self._executor = ThreadPoolExecutor(API_THREADS, thread_name_prefix="ca-api")
        config = uvicorn.Config(
            create_app(ca, self._executor, inline=issues_inline(ca)),
            host=self.host,
            port=self.port,
            http=PeerCertProtocol,
            loop="uvloop",
            lifespan="off",
            # The caller is the socket's address (rate limit, audit), never X-Forwarded-For.
            proxy_headers=False,
            log_config=None,
            access_log=False,
            ssl_context_factory=lambda _config, _default: self.ssl,
        )
        self.server = uvicorn.Server(config) if own_signals else QuietUvicorn(config)
        self.addr = addr
        self._reuse_port = reuse_port
        self._addr_flag = addr_flag
        self._socket: socket.socket | None = None

    def bind(self) -> None:
        """Open the listening socket now; raises :class:`~meshward.listen.AddressInUse`.

        Connections made after this wait in the backlog until :meth:`serve` runs.
        """
        if self._socket is None:
            self._socket = listen(
                self.addr, reuse_port=self._reuse_port, what="CA API", flag=self._addr_flag
            )

    @property
    def server_id(self) -> SpiffeId:
        return SpiffeId(self.ca.trust_domain, SERVER_PATH)

    def _refresh_trust(self) -> None:
        authority = self.ca.authority
        if authority.sequence != self._trusted_sequence:
            # Adding is enough: a retired CA is past notAfter, so it verifies nothing.
            self.ssl.load_verify_locations(cadata=authority.bundle().to_pem().decode("ascii"))
            self._trusted_sequence = authority.sequence
            if self.bundle_file is not None:
                write_private_file(self.bundle_file, authority.bundle().to_json())
                self.bundle_file.chmod(0o644)
                pem = self.bundle_file.with_suffix(".pem")  # for curl --cacert
                write_private_file(pem, authority.bundle().to_pem())
                pem.chmod(0o644)

    def _renew_server_svid(self) -> None:
        fresh = self._issue_server_svid_if_due()
        if fresh is not None:
            self._install_server_svid(*fresh)

    def _issue_server_svid_if_due(self) -> tuple[IssuedX509, Any] | None:
        """A new server SVID and its key when half the old one's life is gone or the CA moved."""
        now = self.ca.clock.now()
        svid = self._server_svid
        if svid is not None and svid.spiffe_id == self.server_id:
            life = svid.not_after - svid.cert.not_valid_before_utc
            if now < svid.not_after - life / 2 and svid.chain[1:] == self.ca.authority.chain():
                return None
        key = generate_key("ec-p256")
        csr = build_csr(key)
        svid = self.ca.issue_x509_local(
            self.server_id,
            csr,
            self.ca.settings.x509_svid_ttl,
            method="server",
            dns_names=self._dns_names(),
            ip_addresses=self._ips(),
        )
        return svid, key

    def _install_server_svid(self, svid: IssuedX509, key: Any) -> None:
        """Load the SVID into the server's TLS context (on the event loop: between handshakes)."""
        secret = os.urandom(16).hex().encode("ascii")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            cert_path, key_path = Path(tmp) / "svid.pem", Path(tmp) / "key.pem"
            cert_path.write_bytes(
                b"".join(c.public_bytes(serialization.Encoding.PEM) for c in svid.chain)
            )
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.BestAvailableEncryption(secret),
                    )
                )
            self.ssl.load_cert_chain(cert_path, key_path, password=secret)
        self._server_svid = svid

    def _ips(self) -> list[IPAddress]:
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return [ipaddress.ip_address("127.0.0.1")]
        return [ip] if not ip.is_unspecified else [ipaddress.ip_address("127.0.0.1")]

    def _dns_names(self) -> list[str]:
        names = ["localhost"]
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            if self.host != "localhost":
                names.append(self.host)
        return names

    async def _rotator(self) -> None:
        """The rotation step, its I/O (database, signing) in a thread and its changes to the
        live TLS context on the event loop, so no handshake sees a context mid-change."""
        period = self.ca.settings.rotate_check_seconds
        database_down = False
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(self.ca.tick)
                self._refresh_trust()
                fresh = await asyncio.to_thread(self._issue_server_svid_if_due)
                if fresh is not None:
                    self._install_server_svid(*fresh)
                self._steps += 1
                if database_down:
                    log.info("CA rotation resumed: the CA database answers again")
                    database_down = False
                if isinstance(self.ca.limiter, DbRateLimiter) and self._steps % 30 == 0:
                    await asyncio.to_thread(self.ca.limiter.prune)
            except StoreUnavailable as exc:
                # One line when the database goes away, one when it is back: a
                # traceback every `period` seconds would bury everything else.
                if not database_down:
                    log.warning("CA rotation paused: %s; retrying every %ss", exc, period)
                database_down = True
            except CaError:
                log.exception("CA rotation step failed")

    async def serve(self) -> None:
        self.bind()
        task = asyncio.create_task(self._rotator())
        try:
            await self.server.serve(sockets=[self._socket] if self._socket else None)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._executor.shutdown(wait=True)

    def shutdown(self) -> None:
        """Ask :meth:`serve` to finish (in-flight requests complete first)."""
        self.server.should_exit = True

    def not_after(self) -> dt.datetime | None:
        return self._server_svid.not_after if self._server_svid else None
