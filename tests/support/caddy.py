"""A real Caddy (Debian's ``caddy``) running ``deploy/caddy/Caddyfile``.

The Caddyfile reads its addresses from ``MESHWARD_*`` environment variables;
the harness sets them and runs the file as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.cli import REPO
from tests.support.net import free_port
from tests.support.proxy import Proxy, ProxyError, Target, run_proxy

__all__ = ["CADDYFILE", "caddy_binary", "caddy_env", "caddy_server"]

CADDYFILE = REPO / "deploy" / "caddy" / "Caddyfile"


def caddy_binary() -> str:
    found = shutil.which("caddy") or ("/usr/bin/caddy" if Path("/usr/bin/caddy").exists() else None)
    if found is None:
        raise ProxyError("caddy is not installed; run scripts/install-system-deps.sh")
    return found


def caddy_env(workdir: Path, port: int, target: Target) -> dict[str, str]:
    """The Caddyfile's placeholders for ``target``, and Caddy's own state under ``workdir``."""
    return {
        "MESHWARD_HOST": target.host,
        "MESHWARD_PORT": str(port),
        "MESHWARD_PDP": target.pdp,
        "MESHWARD_UPSTREAM": f"127.0.0.1:{target.upstream_port}",
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "HOME": str(workdir),
    }


@contextmanager
def caddy_server(workdir: Path, target: Target) -> Iterator[Proxy]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = ["--config", str(CADDYFILE), "--adapter", "caddyfile"]
    with run_proxy(
        "caddy",
        [caddy_binary(), "run", *config],
        workdir=workdir,
        ports=[port],
        check=[caddy_binary(), "validate", *config],
        env=caddy_env(workdir, port, target),
    ) as proxy:
        yield proxy
