"""``meshward pdp serve --policies GIT-URL``: a real PDP process following a real Git remote."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2

from authz.adapters.activepolicies import sign
from tests.support.envoy import SHOP, check_request
from tests.support.gitrepo import PolicyRepo
from tests.support.pdp import pdp_process
from tests.support.policyfiles import FAILING_TEST, SCHEMA_VIOLATION, SYNTAX_ERROR, example_files
from tests.support.wait import eventually

SECRET = "refresh-secret-of-the-test"
FRONTEND = f"{SHOP}/frontend"


def _policies(files: Mapping[str, str | None]) -> dict[str, str | None]:
    return {f"policies/{k}": v for k, v in files.items()}


def _env(**extra: str) -> dict[str, str]:
    return {"MESHWARD_POLICY_SOURCE__SUBDIR": "policies", **extra}


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    eventually(predicate, timeout, 0.1, what)


def _status(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/policies", timeout=10).json())


def _active_is(url: str, version: str) -> bool:
    return bool(_status(url)["active_version"] == version)


def _rejected_is(url: str, version: str) -> bool:
    return bool((_status(url)["last_rejected"] or {}).get("version") == version)


def test_checks_never_fail_while_good_and_bad_commits_arrive(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    first = repo.commit(_policies(example_files()), "example policies")
    log_path = tmp_path / "decisions.jsonl"
    env = _env(
        MESHWARD_POLICY_SOURCE__POLL_INTERVAL="0.2",
        MESHWARD_DECISION_LOG__PATH=str(log_path),
    )
    good = {first}
    bad: set[str] = set()
    results: list[tuple[int, bool]] = []
    failures: list[str] = []
    stop = threading.Event()
    with pdp_process(tmp_path / "pdp", policies=repo.url, env=env) as pdp:
        assert _status(pdp.http_url)["active_version"] == first

        def client() -> None:
            with grpc.insecure_channel(pdp.grpc_addr) as channel:
                stub = external_auth_pb2_grpc.AuthorizationStub(channel)
                while not stop.is_set():
                    try:
                        response = stub.Check(
                            check_request(
                                principal=FRONTEND, certificate=pdp.peer_certificate(FRONTEND)
                            ),
                            timeout=10,
                        )
                        results.append((response.status.code, response.HasField("ok_response")))
                    except grpc.RpcError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            breakage = [SYNTAX_ERROR, SCHEMA_VIOLATION, FAILING_TEST]
            for n in range(10):
                if n % 2:
                    changes = breakage[(n // 2) % 3]
                    sha = repo.commit(_policies(dict(changes)), f"bad change {n}")
                    bad.add(sha)
                    _wait(partial(_rejected_is, pdp.http_url, sha), f"commit {n} rejected")
                    # undo the breakage so the next good commit is whole again
                    undo = {k: example_files().get(k) for k in changes}
                    repo.commit(_policies(undo), f"undo {n}", push=False)
                else:
                    sha = repo.commit(
                        _policies({"notes.cedar": f"// revision {n}\n"}), f"good change {n}"
                    )
                    good.add(sha)
                    _wait(partial(_active_is, pdp.http_url, sha), f"commit {n} active")
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        status = _status(pdp.http_url)
    # the undo commits were pushed together with the next good commit: they are good too
    assert failures == []
    assert len(results) > 50
    assert all(code == code_pb2.OK and ok for code, ok in results)
    assert status["reloads"]["activated"] == 6  # the first and five good commits
    assert status["reloads"]["rejected"] == 5
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(lines) >= len(results)
    versions = {line["policy_version"] for line in lines if line["adapter"] == "envoy_grpc"}
    assert versions <= good
    assert not versions & bad
    assert len(versions) >= 3  # decisions were made on several versions during the run


def test_policies_endpoint_webhook_and_unreachable_remote(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    first = repo.commit(_policies(example_files()), "example policies")
    env = _env(
        MESHWARD_POLICY_SOURCE__POLL_INTERVAL="3600",
        MESHWARD_POLICY_SOURCE__WEBHOOK_SECRET=SECRET,
    )
    with pdp_process(tmp_path / "pdp", policies=repo.url, env=env) as pdp:
        url = pdp.http_url

        def refresh(body: bytes, signature: str | None) -> int:
            headers = {"X-Meshward-Signature": signature} if signature else {}
            return httpx.post(
                f"{url}/v1/policies/refresh", content=body, headers=headers, timeout=10
            ).status_code

        status = _status(url)
        assert status["active_version"] == first
        assert status["source"] == f"git {repo.url} branch main subdir policies"

        broken = repo.commit(_policies({**SYNTAX_ERROR, **SCHEMA_VIOLATION}), "broken")
        # unsigned or wrongly signed: 401, and nothing is fetched
        assert refresh(b"{}", None) == 401
        assert refresh(b"{}", sign(b"wrong", b"{}")) == 401
        time.sleep(1.0)
        assert _status(url)["reloads"] == status["reloads"]
        assert _status(url)["last_rejected"] is None

        push = b'{"ref": "refs/heads/main"}'
        assert refresh(push, sign(SECRET.encode(), push)) == 202
        _wait(lambda: _status(url)["last_rejected"] is not None, "broken commit gated")
        status = _status(url)
        assert status["active_version"] == first
        rejected = status["last_rejected"]
        assert rejected["version"] == broken
        assert rejected["stage"] == "bundle"
        assert {(e["file"], e["code"]) for e in rejected["errors"]} == {
            ("broken.cedar", "syntax-error"),
            ("extra.cedar", "schema-violation"),
        }
        # still serving the last good version
        decision = httpx.post(
            f"{url}/v1/authorize",
            json={
                "principal": f'Workload::"{FRONTEND}"',
                "action": 'Action::"GET"',
                "resource": f'Service::"{SHOP}/catalog"',
                "context": {},
            },
            timeout=10,
        ).json()
        assert decision["decision"] == "allow"

        # the remote goes away, then comes back as garbage: the fetch error is shown
        moved = tmp_path / "moved.git"
        shutil.move(repo.remote, moved)
        assert refresh(b"{}", sign(SECRET.encode(), b"{}")) == 202
        _wait(lambda: _status(url)["last_fetch_error"] is not None, "fetch error shown")
        assert _status(url)["last_fetch_error"]["code"] == "unreachable"
        repo.remote.mkdir()
        (repo.remote / "HEAD").write_bytes(b"\x00garbage\xff")
        (repo.remote / "objects").mkdir()
        (repo.remote / "refs").mkdir()
        before = _status(url)["reloads"]["fetch_failed"]
        assert refresh(b"{}", sign(SECRET.encode(), b"{}")) == 202
        _wait(lambda: _status(url)["reloads"]["fetch_failed"] > before, "garbage fetched")
        status = _status(url)
        assert status["active_version"] == first
        assert status["last_fetch_error"] is not None
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        source = f"git {repo.url} branch main subdir policies"
        assert f'meshward_policy_info{{source="{source}",version="{first}"}} 1.0' in metrics
        assert 'meshward_policy_reloads_total{result="fetch_failed"}' in metrics

        # the remote is back; the fix arrives and activates
        shutil.rmtree(repo.remote)
        shutil.move(moved, repo.remote)
        fixed = repo.commit(_policies(dict.fromkeys([*SYNTAX_ERROR, *SCHEMA_VIOLATION])), "fix")
        assert refresh(b"{}", sign(SECRET.encode(), b"{}")) == 202
        _wait(lambda: _status(url)["active_version"] == fixed, "fix active")
        assert _status(url)["last_fetch_error"] is None
