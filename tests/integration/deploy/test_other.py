"""systemd units, the Dockerfile, Traefik — and that nothing under deploy/ goes unchecked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.deploy.conftest import DEPLOY, deploy_files, ids
from tests.support.cli import REPO

UNITS = deploy_files("systemd", ".service", ".timer", ".socket")
TRAEFIK = deploy_files("traefik", ".yaml", ".yml")

# Which test module validates which part of deploy/; a file nobody validates fails.
VALIDATED_BY = {
    "envoy": (".yaml", ".yml", ".json"),
    "kubernetes": (".yaml", ".yml"),
    # .conf: test_nginx.py; the auth_request template, its include and renderer:
    # test_nginx.py renders it and runs nginx -t, and
    # tests/integration/test_pdp_nginx.py runs it with real nginx and the PDP.
    "nginx": (".conf", ".conf.template", ".inc", "render.py"),
    "systemd": (".service", ".timer", ".socket"),
    # traefik, caddy, haproxy: test_forward_auth_proxies.py runs each proxy's
    # check, and tests/attacks/test_proxies.py sends traffic through them.
    "traefik": (".yaml", ".yml"),
    "caddy": ("Caddyfile",),
    "haproxy": (".cfg", ".lua"),
    "prometheus": (".yaml", ".yml"),
    "grafana": (".json",),
}


def test_every_file_under_deploy_is_validated() -> None:
    unchecked = []
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file() or path.suffix == ".md":
            continue  # Markdown is link-checked by tests/docs
        part = path.relative_to(DEPLOY).parts[0]
        if not path.name.endswith(VALIDATED_BY.get(part, ())):
            unchecked.append(str(path.relative_to(DEPLOY)))
    assert not unchecked, f"no test validates: {unchecked}"


# systemd


def systemd_verify(unit_text: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on a copy whose ExecStart binary exists here.

    verify insists that the executable exists, so the install path
    (/opt/meshward/bin/meshward) is pointed at this interpreter; everything
    else is verified as written, and any warning (an unknown key or section)
    counts as a failure.
    """
    unit = tmp_path / name
    unit.write_text(unit_text.replace("/opt/meshward/bin/meshward", sys.executable))
    binary = shutil.which("systemd-analyze")
    if binary is None:
        raise RuntimeError("systemd-analyze is not installed")
    return subprocess.run(
        [binary, "verify", "--man=no", str(unit)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("path", UNITS, ids=ids(UNITS))
def test_systemd_unit_verifies(path: Path, tmp_path: Path) -> None:
    done = systemd_verify(path.read_text(encoding="utf-8"), path.name, tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("path", UNITS, ids=ids(UNITS))
def test_systemd_unit_runs_unprivileged_and_hardened(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^User=(?!root)\w+", text, re.M)
    assert "NoNewPrivileges=yes" in text
    assert "ProtectSystem=strict" in text


def test_systemd_verify_catches_an_unknown_key(tmp_path: Path) -> None:
    done = systemd_verify(
        "[Service]\nExecStart=/opt/meshward/bin/meshward up\nNoSuchKey=1\n", "x.service", tmp_path
    )
    assert "NoSuchKey" in done.stderr


def test_there_are_units_for_the_ca_and_the_pdp() -> None:
    assert {p.name for p in UNITS} >= {"meshward-pdp.service", "meshward-ca.service"}


# Dockerfile: no daemon runs here to build it, so its shape is checked.


def _stages(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for raw in re.sub(r"\\\n", " ", dockerfile).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multistage_slim_and_non_root() -> None:
    stages = _stages((REPO / "Dockerfile").read_text(encoding="utf-8"))
    assert len(stages) >= 2
    final = stages[-1]
    assert "slim" in final[0]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    final_text = "\n".join(final)
    for compiler in ("build-essential", "gcc", "g++", "clang", "make "):
        assert compiler not in final_text
    assert any("build-essential" in line for line in stages[0])
    assert any(line.startswith("COPY --from=") for line in final)
    entry = [line for line in final if line.startswith("ENTRYPOINT")]
    assert entry and "meshward" in entry[-1]


def test_dockerfile_copies_what_exists() -> None:
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


# Traefik: no Traefik binary or schema is available offline; the forwardAuth
# middlewares are checked against what the PDP serves.


def _forward_auths(config: dict[str, Any]) -> list[dict[str, Any]]:
    middlewares = (config.get("http") or {}).get("middlewares") or {}
    return [m["forwardAuth"] for m in middlewares.values() if "forwardAuth" in m]


@pytest.mark.parametrize("path", TRAEFIK, ids=ids(TRAEFIK))
def test_traefik_config_parses(path: Path) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    known = {"http", "tcp", "udp", "tls", "entryPoints", "providers", "log", "api", "metrics",
             "accessLog", "tracing", "ping", "global", "serversTransport"}  # fmt: skip
    assert set(config) <= known
    routers = (config.get("http") or {}).get("routers") or {}
    middlewares = (config.get("http") or {}).get("middlewares") or {}
    services = (config.get("http") or {}).get("services") or {}
    for router in routers.values():
        assert router["service"] in services
        for name in router.get("middlewares", []):
            assert name in middlewares


def test_traefik_forward_auth_asks_the_pdp() -> None:
    auths = [a for p in TRAEFIK for a in _forward_auths(yaml.safe_load(p.read_text()))]
    assert auths
    for auth in auths:
        assert auth["address"].endswith("/auth/traefik")
        assert auth["trustForwardHeader"] is False
        assert auth["authResponseHeadersRegex"] == "^X-Meshward-"


def test_traefik_removes_client_xfcc_before_forward_auth() -> None:
    config = yaml.safe_load((DEPLOY / "traefik" / "dynamic.yaml").read_text())
    middlewares = config["http"]["middlewares"]
    for router in config["http"]["routers"].values():
        chain = router.get("middlewares", [])
        auth = [i for i, name in enumerate(chain) if "forwardAuth" in middlewares[name]]
        if auth:
            before = [middlewares[name] for name in chain[: auth[0]]]
            removed = {
                k
                for m in before
                for k, v in m.get("headers", {}).get("customRequestHeaders", {}).items()
                if v == ""
            }
            assert "X-Forwarded-Client-Cert" in removed
