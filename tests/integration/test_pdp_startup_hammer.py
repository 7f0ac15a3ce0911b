"""From the moment its port opens, a starting PDP answers only with its policies' decision.

A client hammers Check on the gRPC port while ``pdp serve`` starts. A policy
directory is active before the port opens, so every answer is the policies'
allow; from a Git remote the port opens first and every answer is
``UNAVAILABLE`` until the first version passes the gate. A request the
policies allow is never answered ``PERMISSION_DENIED``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2

from tests.support.cli import REPO
from tests.support.envoy import SHOP, check_request
from tests.support.gitrepo import PolicyRepo
from tests.support.pdp import PdpProcess, pdp_process
from tests.support.policyfiles import example_files

FRONTEND = f"{SHOP}/frontend"
OK_ANSWERS_WANTED = 20


@dataclass
class Hammer:
    """Checks an allowed request in a loop; records every gRPC error and Check status."""

    answers: list[int] = field(default_factory=list)  # CheckResponse status codes, in order
    rpc_errors: set[grpc.StatusCode] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self, pdp: PdpProcess) -> threading.Thread:
        allowed = check_request(
            principal=FRONTEND, certificate=pdp.peer_certificate(FRONTEND), path="/items"
        )
        thread = threading.Thread(target=self.run, args=(pdp.grpc_addr, allowed), daemon=True)
        thread.start()  # before the process exists: the first connection that succeeds is seen
        return thread

    def run(self, addr: str, allowed: pb.CheckRequest) -> None:
        options = [
            ("grpc.initial_reconnect_backoff_ms", 10),
            ("grpc.min_reconnect_backoff_ms", 10),
            ("grpc.max_reconnect_backoff_ms", 50),
        ]
        with grpc.insecure_channel(addr, options=options) as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            deadline = time.monotonic() + 90
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    response = stub.Check(allowed, timeout=5)
                except grpc.RpcError as exc:
                    self.rpc_errors.add(exc.code())
                    time.sleep(0.005)
                    continue
                self.answers.append(response.status.code)
                if self.answers.count(code_pb2.OK) >= OK_ANSWERS_WANTED:
                    return


def _hammer_while_starting(tmp_path: Path, policies: Path | str) -> Hammer:
    hammer = Hammer()
    threads: list[threading.Thread] = []
    try:
        with pdp_process(
            tmp_path / "pdp",
            policies=policies,
            wait_ready=False,
            before_start=lambda pdp: threads.append(hammer.start(pdp)),
        ) as pdp:
            threads[0].join(timeout=90)
            assert not threads[0].is_alive(), pdp.output()
    finally:
        hammer.stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return hammer


def test_directory_source_listens_only_with_its_policies_active(tmp_path: Path) -> None:
    hammer = _hammer_while_starting(tmp_path, REPO / "policies")
    # Before the port opened the client saw only "cannot connect"; every answer
    # the PDP gave was the policies' allow, from the very first one.
    assert hammer.rpc_errors <= {grpc.StatusCode.UNAVAILABLE}
    assert hammer.answers.count(code_pb2.OK) == OK_ANSWERS_WANTED
    assert set(hammer.answers) == {code_pb2.OK}


def test_git_source_answers_unavailable_until_the_first_version_passes(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit(example_files())
    hammer = _hammer_while_starting(tmp_path, repo.url)
    assert hammer.rpc_errors <= {grpc.StatusCode.UNAVAILABLE}
    first_ok = hammer.answers.index(code_pb2.OK)
    # The port opened while the first version was still being fetched and gated.
    assert first_ok > 0
    assert set(hammer.answers[:first_ok]) == {code_pb2.UNAVAILABLE}
    assert set(hammer.answers[first_ok:]) == {code_pb2.OK}
    assert code_pb2.PERMISSION_DENIED not in hammer.answers
