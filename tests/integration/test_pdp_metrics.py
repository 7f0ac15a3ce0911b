"""``/metrics`` with ``--workers 2``: any worker's scrape counts every worker's decisions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.pdp import PdpProcess, pdp_process
from tests.support.wait import eventually

SHOP = "spiffe://meshward.local/ns/shop/sa"
REQUEST = {
    "principal": f'Workload::"{SHOP}/orders"',
    "action": 'Action::"GET"',
    "resource": f'Service::"{SHOP}/catalog"',
    "context": {},
}
N = 60


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdpProcess]:
    workdir: Path = tmp_path_factory.mktemp("pdp-workers")
    with pdp_process(workdir, "--workers", "2") as proc:
        yield proc


def decisions_total(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "meshward_pdp_decisions":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def test_scrapes_of_any_worker_sum_all_workers(pdp: PdpProcess) -> None:
    sent = [0]

    def both_workers_decided() -> bool:
        for _ in range(N):
            # A new connection each time, so the kernel spreads them over the workers
            # (the port opens with the first worker: the second may still be starting).
            with httpx.Client(base_url=pdp.http_url) as client:
                response = client.post("/v1/authorize", content=json.dumps(REQUEST))
                assert response.status_code == 200
            sent[0] += 1
        run_dirs = list((pdp.workdir / "state" / "metrics").iterdir())
        assert len(run_dirs) == 1
        pids = {p.stem.rsplit("_", 1)[-1] for p in run_dirs[0].glob("counter_*.db")}
        return len(pids) == 2

    eventually(both_workers_decided, 60, 0.1, "both workers to write samples")
    for _ in range(8):
        with httpx.Client(base_url=pdp.http_url) as client:
            assert decisions_total(client.get("/metrics").text) == sent[0]


def test_policy_version_and_readiness_are_reported(pdp: PdpProcess) -> None:
    text = httpx.get(f"{pdp.http_url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    info = families.get("meshward_policy_info") or families["meshward_policy"]
    versions = [s for s in info.samples if s.value == 1]
    assert len({s.labels["version"] for s in versions}) == 1
    assert [s.value for s in families["meshward_pdp_policies_loaded"].samples] == [1]
