"""A real HAProxy (Debian's ``haproxy``, 2.6+) running ``deploy/haproxy/``.

haproxy.cfg reads its addresses and the Lua file's path from ``MESHWARD_*``
environment variables; the harness sets them and runs the files as they are.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.cli import REPO
from tests.support.net import free_port
from tests.support.proxy import Proxy, ProxyError, Target, run_proxy

__all__ = ["HAPROXY_CFG", "haproxy_binary", "haproxy_env", "haproxy_server"]

DEPLOY = REPO / "deploy" / "haproxy"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        raise ProxyError("haproxy is not installed; run scripts/install-system-deps.sh")
    return found


def haproxy_env(port: int, target: Target) -> dict[str, str]:
    """haproxy.cfg's environment variables for ``target``."""
    return {
        "MESHWARD_BIND": f"127.0.0.1:{port}",
        "MESHWARD_HOST": target.host,
        "MESHWARD_PDP": target.pdp,
        "MESHWARD_UPSTREAM": f"127.0.0.1:{target.upstream_port}",
        "MESHWARD_LUA": str(DEPLOY / "meshward-auth.lua"),
    }


@contextmanager
def haproxy_server(workdir: Path, target: Target) -> Iterator[Proxy]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [haproxy_binary(), "-f", str(HAPROXY_CFG)]
    with run_proxy(
        "haproxy",
        [*argv, "-db"],  # foreground, logs to stderr
        workdir=workdir,
        ports=[port],
        check=[*argv, "-c", "-q"],
        env=haproxy_env(port, target),
    ) as proxy:
        yield proxy
