"""``meshward up`` as a newcomer runs it: printed examples, ports, passphrase, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import REPO, meshward, meshward_argv, meshward_env
from tests.support.net import free_port, wait_for_port
from tests.support.up import Ports, Up, running_up, start_up
from tests.support.wait import eventually


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    # Global options after the subcommand, ports from the up flags.
    with running_up(tmp_path_factory.mktemp("up"), flags=True) as running:
        yield running


def _run_example(command: str) -> str:
    """Run one printed command; ``meshward`` is the CLI under test."""
    argv = shlex.split(command)
    if argv[0] == "meshward":
        argv = meshward_argv(*argv[1:])
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=60, env=meshward_env(), cwd=REPO
    )
    out = result.stdout
    if out.startswith("HTTP/"):
        return "allow" if out.split()[1] == "200" else "deny"
    return str(json.loads(out)["decision"])


def _examples(output: str) -> list[tuple[str, str]]:
    return re.findall(r"^  # .* \[(allow|deny)\]\n  (.+)$", output, re.M)


def test_printed_examples_allow_and_deny(up: Up) -> None:
    output = up.output()
    assert f"127.0.0.1:{up.ports.grpc}" in output
    pairs = _examples(output)
    assert {shlex.split(cmd)[0] for _, cmd in pairs} == {"meshward", "curl"}
    assert any("pdp ask" in cmd for _, cmd in pairs)
    assert "grpcurl" not in output
    assert {expect for expect, _ in pairs} == {"allow", "deny"}
    for expect, command in pairs:
        assert _run_example(command) == expect, command


def test_pdp_ask_prints_status_headers_and_body(up: Up) -> None:
    denied = meshward(
        "pdp", "ask", "--grpc-addr", f"127.0.0.1:{up.ports.grpc}",
        "--host", "shop", "--method", "DELETE", "--path", "/orders",
    )  # fmt: skip
    assert denied.returncode == 1, denied.stderr
    answer = json.loads(denied.stdout)
    assert answer["grpc_status"] == "UNAUTHENTICATED" and answer["http_status"] == 401
    assert answer["body"]["decision_id"] == answer["headers"]["x-meshward-decision-id"]
    request = {
        "attributes": {"request": {"http": {"method": "GET", "path": "/healthz", "host": "shop"}}}
    }
    allowed = meshward(
        "pdp", "ask", "--grpc-addr", f"127.0.0.1:{up.ports.grpc}", "--json", "-",
        stdin=json.dumps(request),
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["headers"]["x-meshward-principal"] == 'Anonymous::"anonymous"'
    nobody = meshward("pdp", "ask", "--grpc-addr", f"127.0.0.1:{free_port()}", "--timeout", "2")
    assert nobody.returncode == 2 and "no answer" in nobody.stderr


def test_the_same_examples_answer_the_same_from_pdp_serve(up: Up, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        meshward_argv(
            "pdp", "serve", "--grpc-addr", f"127.0.0.1:{grpc_port}",
            "--http-addr", f"127.0.0.1:{http_port}", "--state-dir", str(tmp_path),
        ),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=meshward_env(), cwd=REPO,
    )  # fmt: skip
    try:
        wait_for_port(http_port, timeout=120, process=proc)
        eventually(lambda: _ready(http_port), 60, 0.1, "the second PDP ready")
        for expect, command in _examples(up.output()):
            moved = command.replace(f":{up.ports.grpc}", f":{grpc_port}").replace(
                f":{up.ports.http}", f":{http_port}"
            )
            assert _run_example(moved) == expect, moved
        # One version hash: policy validate names the files as the running PDP does.
        validate = meshward("policy", "validate", "policies")
        served = httpx.get(f"http://127.0.0.1:{http_port}/readyz").json()["policy_version"]
        assert f"(version {served})" in validate.stdout
        assert f"(policies {served})" in up.output()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_ca_commands_find_the_passphrase_up_created(up: Up) -> None:
    # Global option after the subcommand, no MESHWARD_CA_PASSPHRASE in the environment.
    listed = meshward("ca", "entry", "list", "--state-dir", str(up.state))
    assert listed.returncode == 0, listed.stderr
    assert "spiffe://meshward.local/meshward/admin" in listed.stdout
    wrong = meshward(
        "ca", "entry", "list", "--state-dir", str(up.state),
        env={"MESHWARD_CA_PASSPHRASE": "not-the-right-one"},
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "ca-passphrase" in wrong.stderr and "Traceback" not in wrong.stderr


def test_quiet_by_default_with_a_decision_log(up: Up) -> None:
    output = up.output()
    assert "creating a CA for meshward.local (first start)" in output
    assert " INFO " not in output and "not reachable" not in output, output
    ca_curl = re.search(r"(curl -s --cacert \S+ https://\S+/metrics)", output)
    assert ca_curl is not None, output
    scraped = subprocess.run(
        shlex.split(ca_curl.group(1)), capture_output=True, text=True, timeout=30, check=False
    )
    assert scraped.returncode == 0 and "meshward_ca_" in scraped.stdout, scraped.stderr
    decisions = up.state / "decisions.jsonl"
    assert f"decision log in {decisions}" in output
    httpx.post(
        f"http://127.0.0.1:{up.ports.http}/v1/authorize",
        json={"principal": 'User::"x"', "action": 'Action::"GET"', "resource": 'Service::"y"'},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not decisions.exists():
        time.sleep(0.1)
    assert json.loads(decisions.read_text().splitlines()[0])["decision"] in ("allow", "deny")
    metrics = httpx.get(f"http://127.0.0.1:{up.ports.http}/metrics").text
    assert "meshward_pdp_decisions_total" in metrics


def _ready(http_port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=10).status_code == 200
    except httpx.TransportError:  # slow to answer on a loaded machine
        return False


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("taken", ["ca", "grpc", "http"])
def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path, taken: str) -> None:
    ports = {"grpc": free_port(), "http": free_port(), "ca": free_port()}
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", ports[taken]))
        holder.listen()
        running = start_up(tmp_path, ports=Ports(**ports), flags=True)
        code = running.process.wait(timeout=60)
    output = running.output()
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert f"127.0.0.1:{ports[taken]}" in lines[0] and f"--{taken}-addr" in lines[0]
    assert _processes_mentioning(str(running.state)) == []


def test_ctrl_c_stops_everything_without_a_traceback(tmp_path: Path) -> None:
    running = start_up(tmp_path, flags=True, session=True)
    running.wait_ready()
    # A terminal's Ctrl-C reaches the whole foreground process group.
    os.killpg(running.process.pid, signal.SIGINT)
    assert running.process.wait(timeout=30) == 0
    assert "Traceback" not in running.output(), running.output()
    # The children exit with it (given time on a loaded machine); none is left behind.
    eventually(
        lambda: _processes_mentioning(str(running.state)) == [],
        30,
        0.1,
        "no process left behind",
        lambda: str(_processes_mentioning(str(running.state))),
    )


def test_up_help_shows_the_address_flags() -> None:
    result = meshward("up", "--help")
    for flag in ("--ca-addr", "--grpc-addr", "--http-addr", "--console-addr"):
        assert flag in result.stdout
    assert "<bool>" not in result.stdout


def test_up_serves_the_web_console_at_the_printed_url(up: Up) -> None:
    match = re.search(r"web console on (http://\S+)", up.output())
    assert match, up.output()
    page = httpx.get(match.group(1) + "policies", timeout=10)
    assert page.status_code == 200
    assert "frontend-reads-catalog" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
