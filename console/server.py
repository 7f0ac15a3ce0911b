"""``meshward console``: wire the console from settings and serve it with uvicorn.

Refuses to start (:class:`ConsoleError`, exit 2) when bound beyond loopback
without a login token, when the port is taken, or when a credential file
cannot be read. :class:`ConsoleServer` is the part ``meshward up`` embeds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
from pathlib import Path

import uvicorn

from console.app import ConsoleConfig, create_app
from console.errors import ConsoleError
from console.security import is_loopback_host
from console.sources import CaApi, PdpApi
from meshward.asgi import QuietUvicorn
from meshward.clock import SystemClock
from meshward.listen import AddressInUse, listen
from meshward.settings import Settings, parse_hostport, secret_value
from meshward.spiffe_bundle import InvalidBundle, load_bundle

__all__ = ["ConsoleError", "ConsoleServer", "build_config", "serve"]

log = logging.getLogger(__name__)


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


class ConsoleServer:
    """The console on its own listening socket, for ``meshward console`` and ``meshward up``.

    The socket is opened in ``__init__`` (a taken port raises
    :class:`~meshward.listen.AddressInUse` before anything runs);
    :meth:`serve` runs until :meth:`shutdown`.
    """

    def __init__(self, settings: Settings, work: Path, addr_flag: str = "--addr") -> None:
        self.addr = settings.console.addr
        config = build_config(settings, work)
        self.sock = listen(self.addr, what="console", flag=addr_flag)
        self.server = QuietUvicorn(
            uvicorn.Config(
                create_app(config, SystemClock()),
                log_level="warning",
                proxy_headers=False,
                access_log=False,
            )
        )

    @property
    def url(self) -> str:
        return f"http://{self.addr}/"

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def shutdown(self) -> None:
        self.server.should_exit = True


def serve(settings: Settings) -> int:
    """Serve the console until SIGINT/SIGTERM; return the exit code."""
    with tempfile.TemporaryDirectory(prefix="meshward-console-") as tmp:
        try:
            console = ConsoleServer(settings, Path(tmp))
        except AddressInUse as exc:
            raise ConsoleError(exc.one_line()) from exc

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, console.shutdown)
            await console.serve()

        print(f"meshward: console on {console.url}", flush=True)
        asyncio.run(main())
        return 0
