"""``meshward up`` plus ``meshward console`` on free ports, and Chromium to look at it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import REPO, meshward_argv
from tests.support.net import free_port, wait_for_port

__all__ = ["CHROMIUM_ARGS", "Mesh", "chromium", "running_mesh"]

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches for the network beyond loopback.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Mesh:
    """Where ``up``'s parts and the console listen."""

    state: Path
    env: dict[str, str]
    pdp_url: str
    console_url: str

    def authorize(self, document: Mapping[str, Any]) -> dict[str, Any]:
        reply = httpx.post(f"{self.pdp_url}/v1/authorize", json=document, timeout=10)
        body: dict[str, Any] = reply.json()
        return body


def _start(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    with log.open("w") as sink:
        return subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, text=True, env=dict(env), cwd=REPO
        )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_mesh(tmp: Path, policies: Path | None = None) -> Iterator[Mesh]:
    """``meshward up`` (CA, PDP, agent and the console) in ``tmp``."""
    ports = {name: free_port() for name in ("grpc", "http", "ca", "console")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWARD_")}
    env.update(
        PYTHONPATH=str(REPO),
        MESHWARD_PDP__GRPC_ADDR=f"127.0.0.1:{ports['grpc']}",
        MESHWARD_PDP__HTTP_ADDR=f"127.0.0.1:{ports['http']}",
        MESHWARD_CA__ADDR=f"127.0.0.1:{ports['ca']}",
        MESHWARD_CONSOLE__ADDR=f"127.0.0.1:{ports['console']}",
    )
    if policies is not None:
        env["MESHWARD_PDP__POLICIES"] = str(policies)
    state = tmp / "state"
    up = _start(meshward_argv("--state-dir", str(state), "up"), tmp / "up.log", env)
    try:
        deadline = time.monotonic() + 90
        while "ready" not in (tmp / "up.log").read_text() and time.monotonic() < deadline:
            if up.poll() is not None:
                raise RuntimeError((tmp / "up.log").read_text())
            time.sleep(0.2)
        wait_for_port(ports["console"], timeout=30)
        yield Mesh(
            state,
            env,
            f"http://127.0.0.1:{ports['http']}",
            f"http://127.0.0.1:{ports['console']}",
        )
    finally:
        _stop(up)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (the system browser, no download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
