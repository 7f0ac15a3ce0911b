"""deploy/caddy, deploy/haproxy and deploy/traefik pass their proxy's own check.

Each is checked with the real program as the harness in tests/support runs
it (tests/attacks/test_proxies.py then sends traffic through it): ``caddy
validate`` and ``caddy adapt``, ``haproxy -c`` (which also compiles the Lua
action), and Traefik started on the two files until its router answers. A
broken config is shown to fail the same check.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.caddy import CADDYFILE, caddy_binary, caddy_env
from tests.support.haproxy import HAPROXY_CFG, haproxy_binary, haproxy_env
from tests.support.net import free_port
from tests.support.proxy import Target
from tests.support.traefik import traefik_server
from tests.support.upstream import echo_upstream, raw_request

TARGET = Target("127.0.0.1:9", 9, "orders.shop.test")  # nothing listens: only checked


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, cwd=cwd, timeout=60,
        check=False,
    )  # fmt: skip


def _caddy(command: str, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = [caddy_binary(), command, "--config", str(config), "--adapter", "caddyfile"]
    return _run(argv, caddy_env(tmp_path, free_port(), TARGET), tmp_path)


def test_caddyfile_validates(tmp_path: Path) -> None:
    done = _caddy("validate", CADDYFILE, tmp_path)
    assert done.returncode == 0, done.stderr


def _handlers(route: dict[str, Any]) -> list[dict[str, Any]]:
    """Every handler of ``route`` and its subroutes, depth first, in order."""
    found = []
    for handler in route.get("handle", []):
        found.append(handler)
        for sub in handler.get("routes", []):
            found += _handlers(sub)
    return found


def test_caddyfile_strips_client_identity_before_asking_the_pdp(tmp_path: Path) -> None:
    done = _caddy("adapt", CADDYFILE, tmp_path)
    assert done.returncode == 0, done.stderr
    (server,) = json.loads(done.stdout)["apps"]["http"]["servers"].values()
    site = next(r for r in server["routes"] if r.get("match"))
    assert site["match"] == [{"host": [TARGET.host]}]
    order = [
        h.get("request", {}).get("delete", [None])[0]
        if h["handler"] == "headers"
        else h.get("rewrite", {}).get("uri", h["handler"])
        for h in _handlers(site)
        if h["handler"] in ("headers", "reverse_proxy") and "match" not in h
    ]
    pdp = order.index("/auth/traefik")
    assert order.index("X-Meshward-*") < pdp
    assert order.index("X-Forwarded-Client-Cert") < pdp


def test_caddy_validate_rejects_a_broken_caddyfile(tmp_path: Path) -> None:
    broken = tmp_path / "Caddyfile"
    broken.write_text(CADDYFILE.read_text() + "\nhttp://x:1 {\n\tno_such_directive\n}\n")
    assert _caddy("validate", broken, tmp_path).returncode != 0


def _haproxy_check(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return _run(
        [haproxy_binary(), "-c", "-f", str(config)], haproxy_env(free_port(), TARGET), tmp_path
    )


def test_haproxy_cfg_and_lua_pass_haproxy_c(tmp_path: Path) -> None:
    done = _haproxy_check(HAPROXY_CFG, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr


def test_haproxy_c_rejects_broken_lua(tmp_path: Path) -> None:
    lua = tmp_path / "broken.lua"
    lua.write_text("core.register_action('meshward-auth', { 'http-req' }, function(txn)\n")
    env = {**haproxy_env(free_port(), TARGET), "MESHWARD_LUA": str(lua)}
    done = _run([haproxy_binary(), "-c", "-f", str(HAPROXY_CFG)], env, tmp_path)
    assert done.returncode != 0


def test_traefik_runs_the_deploy_files(tmp_path: Path) -> None:
    """The harness waits until the router answers; with the PDP absent, the
    request fails closed (5xx) and never reaches the service."""
    with echo_upstream() as upstream:
        target = Target(f"127.0.0.1:{free_port()}", upstream.port, TARGET.host)
        with traefik_server(tmp_path, target) as traefik:
            response = raw_request(traefik.port, "/orders", [("host", TARGET.host)])
            assert response.status >= 500
            assert upstream.received == []
            other = raw_request(traefik.port, "/orders", [("host", "elsewhere.test")])
            assert other.status == 404
