from __future__ import annotations

import datetime as dt

import pytest

from console.overview import History, quantile, snapshot

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _metrics(allow: int, deny: int, fast: int, slow: int) -> str:
    return f"""# TYPE meshward_pdp_decisions counter
meshward_pdp_decisions_total{{adapter="grpc",result="allow"}} {allow}
meshward_pdp_decisions_total{{adapter="http",result="deny"}} {deny}
# TYPE meshward_pdp_decision_seconds histogram
meshward_pdp_decision_seconds_bucket{{adapter="grpc",le="0.001"}} {fast}
meshward_pdp_decision_seconds_bucket{{adapter="grpc",le="0.01"}} {fast + slow}
meshward_pdp_decision_seconds_bucket{{adapter="grpc",le="+Inf"}} {fast + slow}
meshward_pdp_decision_seconds_count{{adapter="grpc"}} {fast + slow}
meshward_pdp_decision_seconds_sum{{adapter="grpc"}} 1
# TYPE meshward_cache_requests counter
meshward_cache_requests_total{{tier="local"}} 6
meshward_cache_requests_total{{tier="miss"}} 2
# TYPE meshward_cache_breaker_state gauge
meshward_cache_breaker_state{{state="closed"}} 0
meshward_cache_breaker_state{{state="open"}} 1
"""


def test_snapshot_reads_decisions_cache_breaker_and_buckets() -> None:
    snap = snapshot(_metrics(7, 3, 8, 2), T0)
    assert snap.decisions["allow"] == 7 and snap.decisions["deny"] == 3
    assert snap.total == 10
    assert snap.cache_hit_rate == pytest.approx(0.75)
    assert snap.breaker == "open"
    assert snap.buckets[0] == (0.001, 8)


def test_quantile_interpolates_inside_a_bucket() -> None:
    buckets = [(0.001, 8.0), (0.01, 10.0), (float("inf"), 10.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.000625)
    assert quantile(buckets, 0.9) == pytest.approx(0.0055)
    assert quantile([], 0.5) is None


def test_history_rates_and_window_latency() -> None:
    history = History(size=3)
    history.add(snapshot(_metrics(0, 0, 0, 0), T0))
    history.add(snapshot(_metrics(10, 0, 0, 10), T0 + dt.timedelta(seconds=5)))
    history.add(snapshot(_metrics(20, 0, 0, 20), T0 + dt.timedelta(seconds=10)))
    assert history.rates() == [2.0, 2.0]
    # every decision in the window was slow: p50 lies in the (1 ms, 10 ms] bucket
    p50 = history.recent_latency(0.5)
    assert p50 is not None and 0.001 < p50 <= 0.01
    history.add(snapshot(_metrics(1, 0, 1, 0), T0 + dt.timedelta(seconds=15)))  # a restart
    assert history.rates() == [2.0, 0.0]
