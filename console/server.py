"""``meshward console``: wire the console from settings and serve it with uvicorn.

Refuses to start (:class:`ConsoleError`, exit 2) when bound beyond loopback
without a login token, when the port is taken, or when a credential file
cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
from pathlib import Path

import uvicorn

from console.app import ConsoleConfig, create_app
from console.security import is_loopback_host
from console.sources import CaApi, PdpApi
from meshward.clock import SystemClock
from meshward.settings import Settings, parse_hostport, secret_value
from meshward.spiffe_bundle import InvalidBundle, load_bundle

__all__ = ["ConsoleError", "build_config", "bind", "serve"]

log = logging.getLogger(__name__)


class ConsoleError(Exception):
    """The console cannot start as configured; the message says why and what to set."""


def _ca_trust(settings: Settings, work: Path) -> Path | None:
    """A PEM file of the CA's roots for its TLS, from the configured or the state-dir bundle."""
    source = settings.console.ca_bundle or settings.state_dir / "ca" / "bundle.json"
    if not source.exists():
        return None
    try:
        bundle = load_bundle(source.read_bytes())
    except (OSError, InvalidBundle) as exc:
        raise ConsoleError(f"cannot read the CA trust bundle {source}: {exc}") from exc
    pem = work / "ca-roots.pem"
    pem.write_bytes(bundle.to_pem())
    return pem


def build_config(settings: Settings, work: Path) -> ConsoleConfig:
    """The console's sources and login rule from ``settings`` (files under ``work``)."""
    c = settings.console
    try:
        pdp_token = secret_value(
            settings.pdp.admin_token, settings.pdp.admin_token_file, "pdp admin token"
        )
        login = secret_value(c.admin_token, c.admin_token_file, "console admin token")
    except ValueError as exc:
        raise ConsoleError(str(exc)) from exc
    host, _port = parse_hostport(c.addr)
    if is_loopback_host(host):
        login = None  # loopback: local users only, no login
    else:
        login = login or pdp_token
        if login is None:
            raise ConsoleError(
                f"console.addr {c.addr} is not loopback: set console.admin_token_file (or "
                "pdp.admin_token_file) so the console requires a login"
            )
    pdp_url = c.pdp_url or f"http://{settings.pdp.http_addr}"
    ca_url = c.ca_url or f"https://{settings.ca.addr}"
    admin_dir = c.ca_admin_dir or settings.state_dir / "admin"
    ca = CaApi(
        ca_url,
        _ca_trust(settings, work),
        admin_cert=admin_dir / "svid.pem",
        admin_key=admin_dir / "key.pem",
    )
    return ConsoleConfig(PdpApi(pdp_url, pdp_token), ca, login, c.sample_seconds)


def bind(addr: str) -> socket.socket:
    """The listening socket for ``addr``; a taken port is a ConsoleError naming it."""
    host, port = parse_hostport(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConsoleError(
            f"cannot listen on {addr} ({exc.strerror}): choose another port with --addr "
            "(or console.addr)"
        ) from exc
    return sock


def serve(settings: Settings) -> int:
    """Serve the console until SIGINT/SIGTERM; return the exit code."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call buries the rest
    with tempfile.TemporaryDirectory(prefix="meshward-console-") as tmp:
        config = build_config(settings, Path(tmp))
        sock = bind(settings.console.addr)
        app = create_app(config, SystemClock())
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", proxy_headers=False, access_log=False)
        )
        log.info("console listening on http://%s/", settings.console.addr)
        print(f"meshward console: http://{settings.console.addr}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(server.serve(sockets=[sock]))
        return 0
