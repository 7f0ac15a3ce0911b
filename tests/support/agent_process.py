"""``meshward agent run`` in a subprocess, against a :class:`~tests.support.ca.CaProcess`."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ca import CaProcess
from tests.support.cli import REPO, meshward_argv, meshward_env

__all__ = ["AgentProcess", "admin_post"]


@dataclass
class AgentProcess:
    ca: CaProcess
    workdir: Path
    token: str | None
    process: subprocess.Popen[bytes] | None = None
    token_file: Path | None = None
    bundle: Path | None = None
    sync_interval: float = 0.5
    extra_args: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.workdir / "api.sock"

    @property
    def endpoint(self) -> str:
        return f"unix:{self.socket}"

    @property
    def files(self) -> Path:
        return self.workdir / "files"

    def start(self) -> None:
        env = meshward_env()
        if self.token:
            env["MESHWARD_AGENT__JOIN_TOKEN"] = self.token
        if self.token_file:
            env["MESHWARD_AGENT__TOKEN_FILE"] = str(self.token_file)
        with (self.workdir / "agent.log").open("ab") as log:
            self.process = subprocess.Popen(
                meshward_argv(
                    "--state-dir", str(self.workdir / "state"), "--log-format", "json",
                    "agent", "run", "--ca-url", self.ca.url,
                    "--ca-bundle", str(self.bundle or self.ca.admin_dir / "bundle.pem"),
                    "--trust-domain", "example.org", "--socket", str(self.socket),
                    "--sds", f"unix:{self.workdir / 'sds.sock'}",
                    "--write-dir", str(self.files), "--sync-interval", str(self.sync_interval),
                    *self.extra_args,
                ),
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "agent.log").read_text()[-3000:])
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self.process = None
        return code


def admin_post(ca: CaProcess, path: str, body: dict[str, object] | None = None) -> httpx.Response:
    """A POST to the CA's admin API with the admin SVID ``ca init`` wrote."""
    with ca.admin() as admin:
        return admin.post(path, json=body or {})
