"""A real nginx from ``deploy/nginx/`` and a small upstream that echoes what reached it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.cli import REPO
from tests.support.net import free_port, wait_for_port

__all__ = ["Nginx", "echo_upstream", "nginx_server"]


class _Echo(BaseHTTPRequestHandler):
    def _reply(self) -> None:
        body = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PUT = _reply

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def echo_upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _render_module():  # deploy/ is not a package: load the renderer by path
    spec = importlib.util.spec_from_file_location("nginx_render", REPO / "deploy/nginx/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Nginx:
    prefix: Path
    port: int
    tls_port: int


@contextmanager
def nginx_server(
    prefix: Path, pdp_addr: str, upstream_port: int, cert: Path, key: Path, client_ca: Path
) -> Iterator[Nginx]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port, tls_port = free_port(), free_port()
    conf = _render_module().render(
        prefix,
        {
            "LISTEN": f"127.0.0.1:{port}",
            "TLS_LISTEN": f"127.0.0.1:{tls_port}",
            "TLS_CERT": str(cert),
            "TLS_KEY": str(key),
            "CLIENT_CA": str(client_ca),
            "PDP": pdp_addr,
            "UPSTREAM": f"127.0.0.1:{upstream_port}",
        },
    )
    argv = [binary, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    check = subprocess.run([*argv[:-2], "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port)
        wait_for_port(tls_port)
        yield Nginx(prefix, port, tls_port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
