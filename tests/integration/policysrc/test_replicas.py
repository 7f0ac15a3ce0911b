"""Two ``meshward pdp serve`` replicas on one Git remote converge through a real redis-server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz.adapters.activepolicies import sign
from tests.support.gitrepo import PolicyRepo
from tests.support.pdp import pdp_process
from tests.support.policyfiles import SYNTAX_ERROR, example_files
from tests.support.redis import RedisServer
from tests.support.wait import eventually

SECRET = b"replica-test-secret"


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    eventually(predicate, timeout, 0.1, what)


def _status(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/policies", timeout=10).json())


def _refresh(url: str) -> None:
    response = httpx.post(
        f"{url}/v1/policies/refresh",
        content=b"{}",
        headers={"X-Meshward-Signature": sign(SECRET, b"{}")},
        timeout=10,
    )
    assert response.status_code == 202


@pytest.mark.slow
def test_replicas_follow_each_other_and_share_rejections(
    tmp_path: Path, redis: RedisServer
) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    first = repo.commit({f"policies/{k}": v for k, v in example_files().items()})
    env = {
        "MESHWARD_POLICY_SOURCE__SUBDIR": "policies",
        "MESHWARD_POLICY_SOURCE__POLL_INTERVAL": "3600",
        "MESHWARD_POLICY_SOURCE__WEBHOOK_SECRET": SECRET.decode(),
    }
    settings = {"redis_url": redis.url}
    with (
        pdp_process(tmp_path / "a", policies=repo.url, env=env, pdp_settings=settings) as a,
        pdp_process(tmp_path / "b", policies=repo.url, env=env, pdp_settings=settings) as b,
    ):
        assert _status(a.http_url)["active_version"] == first
        assert _status(b.http_url)["active_version"] == first

        good = repo.commit({"policies/notes.cedar": "// a reviewed change\n"})
        _refresh(a.http_url)  # only A is told; B polls once an hour
        _wait(lambda: _status(b.http_url)["active_version"] == good, "B follows A")

        bad = repo.commit({f"policies/{k}": v for k, v in SYNTAX_ERROR.items()})
        _refresh(a.http_url)
        _wait(lambda: (_status(a.http_url)["last_rejected"] or {}).get("version") == bad, "A")
        _refresh(b.http_url)
        _wait(lambda: (_status(b.http_url)["last_rejected"] or {}).get("version") == bad, "B")
        rejected = _status(b.http_url)["last_rejected"]
        assert rejected["stage"] == "gate"  # refused because A rejected it, not re-gated
        assert _status(b.http_url)["active_version"] == good
        assert _status(a.http_url)["active_version"] == good
