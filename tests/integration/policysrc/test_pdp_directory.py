"""``meshward pdp serve`` on a watched directory, with a shadow candidate and a decision log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import REPO
from tests.support.pdp import pdp_process
from tests.support.policyfiles import SYNTAX_ERROR, TIGHTEN_ORDERS_READS_CATALOG
from tests.support.wait import eventually

NS = "spiffe://meshward.local/ns/shop/sa/"


def _wait(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
    detail: Callable[[], str] | None = None,
) -> None:
    eventually(predicate, timeout, 0.1, what, detail)


def _ask(url: str, path: str) -> dict[str, Any]:
    body = {
        "principal": f'Workload::"{NS}orders"',
        "action": 'Action::"GET"',
        "resource": f'Service::"{NS}catalog"',
        "context": {
            "http": {
                "method": "GET",
                "host": "catalog",
                "path": path,
                "query": "",
                "headers": {"cookie": "session=do-not-log-me"},
            }
        },
    }
    return dict(httpx.post(f"{url}/v1/authorize", json=body, timeout=10).json())


def test_directory_watch_shadow_and_decision_log(tmp_path: Path) -> None:
    live = tmp_path / "live"
    candidate = tmp_path / "candidate"
    shutil.copytree(REPO / "policies", live)
    shutil.copytree(REPO / "policies", candidate)
    for name, text in TIGHTEN_ORDERS_READS_CATALOG.items():
        (candidate / name).write_text(text)
    log_path = tmp_path / "logs" / "decisions.jsonl"
    env = {
        "MESHWARD_POLICY_SOURCE__POLL_INTERVAL": "0.2",
        "MESHWARD_POLICY_SOURCE__SHADOW": str(candidate),
        "MESHWARD_DECISION_LOG__PATH": str(log_path),
    }
    with pdp_process(tmp_path / "pdp", policies=live, env=env) as pdp:
        url = pdp.http_url
        # ready means the live policies are active; the shadow may still be loading
        _wait(
            lambda: httpx.get(f"{url}/v1/policies").json()["shadow"]["active_version"],
            "shadow active",
        )
        status = httpx.get(f"{url}/v1/policies", timeout=10).json()
        first = status["active_version"]
        assert first.startswith("sha256:")
        assert status["shadow"]["active_version"].startswith("sha256:")
        assert status["shadow"]["active_version"] != first

        # enforced: the live policies; the candidate would deny /stock
        assert _ask(url, "/stock/1")["decision"] == "allow"
        assert _ask(url, "/products/1")["decision"] == "allow"

        def shadow_counts() -> dict[str, float]:
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            out = {}
            for line in metrics.splitlines():
                if line.startswith("meshward_policy_shadow_total{"):
                    label, _, value = line.rpartition(" ")
                    out[label.split('"')[1]] = float(value)
            return out

        # Shadow evaluations are counted in the background, each in its own time.
        _wait(
            lambda: (shadow_counts().get("agree"), shadow_counts().get("disagree")) == (1.0, 1.0),
            "one agreement and one disagreement counted",
            detail=lambda: str(shadow_counts()),
        )

        # a broken edit is refused; the last good version keeps serving
        (live / "broken.cedar").write_text(next(iter(SYNTAX_ERROR.values())))
        _wait(
            lambda: httpx.get(f"{url}/v1/policies").json()["last_rejected"] is not None,
            "broken edit rejected",
        )
        assert httpx.get(f"{url}/v1/policies").json()["active_version"] == first
        # the edit is fixed and taken
        (live / "broken.cedar").unlink()
        (live / "workloads.cedar").write_text(
            (live / "workloads.cedar").read_text() + "\n// reviewed\n"
        )
        _wait(
            lambda: httpx.get(f"{url}/v1/policies").json()["active_version"] not in (first, None),
            "fixed edit active",
        )
        second = httpx.get(f"{url}/v1/policies").json()["active_version"]
        assert _ask(url, "/stock/2")["decision"] == "allow"

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [line["request"]["path"] for line in lines] == [
        "/stock/1",
        "/products/1",
        "/stock/2",
    ]
    assert [line["policy_version"] for line in lines] == [first, first, second]
    assert all(line["adapter"] == "api" for line in lines)
    assert all(line["context"]["http"]["headers"]["cookie"] == "[redacted]" for line in lines)
    assert "do-not-log-me" not in log_path.read_text()
