"""``meshward up`` runs a node agent too: the example workload gets its SVID from it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from spiffe import WorkloadApiClient

from tests.support.cli import REPO, meshward_argv
from tests.support.net import free_port


def test_up_serves_the_example_svid_over_the_workload_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    state = tmp_path_factory.mktemp("up") / "s"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWARD_")}
    env.update(
        PYTHONPATH=str(REPO),
        MESHWARD_PDP__GRPC_ADDR=f"127.0.0.1:{free_port()}",
        MESHWARD_PDP__HTTP_ADDR=f"127.0.0.1:{free_port()}",
        MESHWARD_CA__ADDR=f"127.0.0.1:{free_port()}",
        MESHWARD_CONSOLE__ADDR=f"127.0.0.1:{free_port()}",
    )
    log = state.parent / "up.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            meshward_argv("--state-dir", str(state), "up"),
            stdout=sink, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        output = log.read_text()
        match = re.search(r"^meshward: agent workload API: (unix:\S+)$", output, re.M)
        assert match, output
        assert re.search(r"^meshward: agent SDS: unix:\S+$", output, re.M)
        with WorkloadApiClient(match.group(1), default_timeout=30) as client:
            svid = client.fetch_x509_context().default_svid
        assert str(svid.spiffe_id) == "spiffe://meshward.local/ns/shop/sa/frontend"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert (state / "agent" / "node.pem").exists()
