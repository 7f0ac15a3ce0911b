"""A real nginx from ``deploy/nginx/`` (the template, filled by its render.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.support.cli import REPO
from tests.support.net import free_port
from tests.support.proxy import Proxy, Target, run_proxy

__all__ = ["Nginx", "TlsFiles", "nginx_binary", "nginx_server"]


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class Nginx:
    proxy: Proxy
    tls_port: int | None

    @property
    def port(self) -> int:
        return self.proxy.port


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _render_module() -> ModuleType:  # deploy/ is not a package: load the renderer by path
    spec = importlib.util.spec_from_file_location("nginx_render", REPO / "deploy/nginx/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def nginx_server(workdir: Path, target: Target, tls: TlsFiles | None = None) -> Iterator[Nginx]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    values = {
        "LISTEN": f"127.0.0.1:{port}",
        "HOST": target.host,
        "PDP": target.pdp,
        "UPSTREAM": f"127.0.0.1:{target.upstream_port}",
    }
    tls_port = None
    if tls is not None:
        tls_port = free_port()
        values |= {
            "TLS_LISTEN": f"127.0.0.1:{tls_port}",
            "TLS_CERT": str(tls.cert),
            "TLS_KEY": str(tls.key),
            "CLIENT_CA": str(tls.client_ca),
        }
    conf = _render_module().render(workdir, values)
    argv = [nginx_binary(), "-e", "stderr", "-p", str(workdir), "-c", str(conf)]
    ports = [port] if tls_port is None else [port, tls_port]
    # Started as root, nginx's workers would switch to nobody, who cannot
    # write request bodies under a private tmp dir: keep them this user.
    directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    with run_proxy(
        "nginx", [*argv, "-g", directives], workdir=workdir, ports=ports, check=[*argv, "-t"]
    ) as proxy:
        yield Nginx(proxy, tls_port)
