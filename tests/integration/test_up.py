"""``meshward up`` runs the PDP on the example policies; its printed examples work."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import grpc
import httpx
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.protobuf import json_format
from google.rpc import code_pb2

from tests.support.cli import REPO, meshward_argv
from tests.support.net import free_port


def _run_example(command: str, grpc_addr: str) -> str:
    """Run one printed command; grpcurl's request goes through Envoy's protos instead."""
    argv = shlex.split(command)
    if argv[0] == "grpcurl":
        request = json_format.Parse(argv[argv.index("-d") + 1], pb.CheckRequest())
        with grpc.insecure_channel(grpc_addr) as channel:
            reply = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)
        return "allow" if reply.status.code == code_pb2.OK else "deny"
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    if out.startswith("HTTP/"):
        return "allow" if out.split()[1] == "200" else "deny"
    return json.loads(out)["decision"]


def test_up_prints_examples_that_allow_and_deny(tmp_path: Path) -> None:
    grpc_port, http_port, ca_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWARD_")}
    env.update(
        PYTHONPATH=str(REPO),
        MESHWARD_PDP__GRPC_ADDR=f"127.0.0.1:{grpc_port}",
        MESHWARD_PDP__HTTP_ADDR=f"127.0.0.1:{http_port}",
        MESHWARD_CA__ADDR=f"127.0.0.1:{ca_port}",
    )
    log = tmp_path / "up.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            meshward_argv("--state-dir", str(tmp_path / "state"), "up"),
            stdout=sink, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        output = log.read_text()
        assert "ready" in output, output
        assert f"127.0.0.1:{grpc_port}" in output
        pairs = re.findall(r"^  # .* \[(allow|deny)\]\n  (.+)$", output, re.M)
        kinds = {shlex.split(cmd)[0] for _, cmd in pairs}
        assert kinds == {"grpcurl", "curl"}
        assert {expect for expect, _ in pairs} == {"allow", "deny"}
        for expect, command in pairs:
            assert _run_example(command, f"127.0.0.1:{grpc_port}") == expect, command
        # The printed metrics URLs answer, and count the decisions just made.
        pdp_metrics, ca_metrics = re.findall(r"(https?://\S+/metrics)", output)[:2]
        assert pdp_metrics == f"http://127.0.0.1:{http_port}/metrics"
        assert ca_metrics == f"https://127.0.0.1:{ca_port}/metrics"
        assert "meshward_pdp_decisions_total" in httpx.get(pdp_metrics).text
        # A decision log by default, one line per decision made above.
        decisions = tmp_path / "state" / "decisions.jsonl"
        assert f"decision log in {decisions}" in output
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            not decisions.exists() or len(decisions.read_text().splitlines()) < len(pairs)
        ):
            time.sleep(0.1)
        lines = [json.loads(line) for line in decisions.read_text().splitlines()]
        assert {entry["decision"] for entry in lines} == {"allow", "deny"}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
