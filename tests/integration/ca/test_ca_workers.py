"""``meshward ca serve --workers N``: processes share the port and are one CA."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

from cryptography import x509

from tests.support.ca import CaProcess, ca_env, new_csr
from tests.support.procs import alive, descendants
from tests.support.replicas import workload_svid
from tests.support.wait import eventually


def _server_serial(proc: CaProcess) -> int:
    ctx = proc.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", proc.port)) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_workers_share_the_port_metrics_and_rate_limit(tmp_path: Path) -> None:
    proc = CaProcess(
        tmp_path / "state",
        env=ca_env(MESHWARD_CA__RATE_BURST="6", MESHWARD_CA__RATE_PER_SECOND="0.01"),
        serve_args=("--workers", "2"),
    )
    assert proc.cli("ca", "init", "--trust-domain", "example.org").returncode == 0
    assert proc.cli("ca", "admin", "login").returncode == 0
    proc.start()
    try:
        svid = workload_svid(proc, "spiffe://example.org/web", tmp_path / "web")
        # Each worker has its own server SVID: new connections reach both (once the
        # second worker listens too: the port opens with the first).
        eventually(
            lambda: len({_server_serial(proc) for _ in range(20)}) == 2, 60, 0.2, "two workers"
        )
        codes = []
        for _ in range(10):
            csr, _key = new_csr()
            with proc.client(svid) as client:  # a new connection each time
                codes.append(client.post("/v1/svid/x509", json={"csr": csr.decode()}).status_code)
        assert codes == [200] * 6 + [429] * 4  # one budget for the caller, whichever worker
        with proc.client() as client:
            text = client.get("/metrics").text
        ok = re.search(
            r'meshward_ca_issuance_total\{kind="x509_svid",method="renewal",result="ok"\} (\S+)',
            text,
        )
        assert ok is not None and float(ok.group(1)) == 6.0  # summed over the workers
        assert proc.process is not None
        proc.process.send_signal(signal.SIGINT)
        assert proc.process.wait(timeout=20) == 0
        proc.process = None
    finally:
        proc.stop()


def test_kill_9_of_the_parent_takes_the_workers_with_it(tmp_path: Path) -> None:
    proc = CaProcess(tmp_path / "state", env=ca_env(), serve_args=("--workers", "2"))
    assert proc.cli("ca", "init", "--trust-domain", "example.org").returncode == 0
    assert proc.cli("ca", "admin", "login").returncode == 0
    proc.start()
    try:
        assert proc.process is not None
        eventually(
            lambda: len({_server_serial(proc) for _ in range(20)}) == 2, 60, 0.2, "two workers"
        )
        left = descendants(proc.process.pid)
        assert len(left) >= 2  # the two workers (and multiprocessing's helper)
        os.kill(proc.process.pid, signal.SIGKILL)
        proc.process.wait(timeout=10)
        proc.process = None
        eventually(lambda: not alive(left), 20, 0.05, "the CA's workers to exit")
    finally:
        proc.stop()
