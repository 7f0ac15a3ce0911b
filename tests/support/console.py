"""``meshward up`` plus ``meshward console`` on free ports, and Chromium to look at it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import wait_for_port
from tests.support.up import running_up

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


@contextmanager
def running_mesh(tmp: Path, policies: Path | None = None) -> Iterator[Mesh]:
    """``meshward up`` (CA, PDP, agent and the console) in ``tmp``."""
    env = {} if policies is None else {"MESHWARD_PDP__POLICIES": str(policies)}
    with running_up(tmp, env=env) as up:
        wait_for_port(up.ports.console, timeout=120)
        yield Mesh(up.state, up.env, up.pdp_url, up.console_url)


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
