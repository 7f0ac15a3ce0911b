"""Shadow mode with the real engine: the example policies live, a tightened copy as candidate."""

from __future__ import annotations

import shutil

import pytest

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, Decision, Effect, EntityUid, Identity
from authz.lifecycle.shadow import Shadow
from authz.sources.runtime import ShadowObserver
from tests.support.cli import REPO
from tests.support.policyfiles import TIGHTEN_ORDERS_READS_CATALOG
from tests.support.records import record_for
from tests.support.wait import eventually

NS = "spiffe://meshward.local/ns/shop/sa/"


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Engine]:
    candidate = tmp_path_factory.mktemp("candidate") / "policies"
    shutil.copytree(REPO / "policies", candidate)
    for name, text in TIGHTEN_ORDERS_READS_CATALOG.items():
        (candidate / name).write_text(text)
    return (
        Engine(load_bundle(REPO / "policies", version="live")),
        Engine(load_bundle(candidate, version="candidate")),
    )


def _request(path: str, caller: str = "orders") -> AccessRequest:
    return AccessRequest(
        Identity(EntityUid("Workload", NS + caller)),
        EntityUid("Action", "GET"),
        EntityUid("Service", NS + "catalog"),
        {"http": {"method": "GET", "host": "catalog", "path": path, "query": "", "headers": {}}},
    )


def test_compare_counts_agreements_and_disagreements(engines: tuple[Engine, Engine]) -> None:
    live, candidate = engines
    shadow = Shadow(lambda: candidate)
    for path in ("/products/1", "/stock/1", "/stock/2"):
        request = _request(path)
        decision = live.evaluate(request)
        assert decision.allowed  # only the live decision is ever enforced
        shadow.compare(request, decision)
    assert shadow.results == {"agree": 1, "disagree": 2}
    assert shadow.disagreements == {"allow->deny": 2}


def test_no_candidate_yet_compares_nothing(engines: tuple[Engine, Engine]) -> None:
    live, _ = engines
    shadow = Shadow(lambda: None)
    request = _request("/stock/1")
    assert shadow.compare(request, live.evaluate(request)) is None
    assert not shadow.results


def test_observer_runs_off_the_decision_path(engines: tuple[Engine, Engine]) -> None:
    live, candidate = engines
    seen: list[str] = []
    with Shadow(lambda: candidate, on_result=seen.append) as shadow:
        observer = ShadowObserver(shadow)
        for n, path in enumerate(["/products", "/stock/9", "/products/2"]):
            request = _request(path)
            observer.observe(record_for(request, live.evaluate(request), f"d{n}"))
        eventually(lambda: len(seen) >= 3, 10, 0.01, "three comparisons")
    assert sorted(seen) == ["agree", "agree", "disagree"]


def test_a_full_queue_drops_comparisons(engines: tuple[Engine, Engine]) -> None:
    live, candidate = engines
    shadow = Shadow(lambda: candidate, max_queue=1)  # not started: nothing drains
    request = _request("/stock/1")
    decision = live.evaluate(request)
    shadow.observe(request, decision)
    shadow.observe(request, decision)
    assert shadow.results == {"dropped": 1}


def test_records_without_a_request_are_ignored(engines: tuple[Engine, Engine]) -> None:
    _, candidate = engines
    shadow = Shadow(lambda: candidate, max_queue=1)
    record = record_for(_request("/x"), Decision(Effect.DENY), built=False)
    ShadowObserver(shadow).observe(record)
    assert not shadow.results
