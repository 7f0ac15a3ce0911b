from __future__ import annotations

import io
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from authz.observe.decisionlog import DecisionLog, StreamSink
from authz.observe.sourcemetrics import PolicyCollector
from authz.sources.directory import DirectorySource
from authz.sources.gate import Gate
from meshward.clock import FixedClock
from tests.support.policyfiles import load_config


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_metrics_follow_the_gate(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "config.json").write_text("{}")
    clock = FixedClock()
    gate = Gate(DirectorySource(root), load_config, clock=clock, work_dir=tmp_path / "w")
    registry = CollectorRegistry()
    dlog = DecisionLog(StreamSink(io.StringIO()))
    registry.register(PolicyCollector(gate, decision_log=dlog))

    before = _scrape(registry)
    assert before["meshward_policy_active"] == 0.0
    assert before['meshward_policy_reloads_total{result="activated"}'] == 0.0

    await gate.reload()
    clock.advance(7)
    (root / "config.json").write_text("{bad")
    await gate.reload()
    after = _scrape(registry)
    version = gate.status().active_version
    assert after["meshward_policy_active"] == 1.0
    assert after[f'meshward_policy_info{{source="directory {root}",version="{version}"}}'] == 1.0
    assert after['meshward_policy_reloads_total{result="activated"}'] == 1.0
    assert after['meshward_policy_reloads_total{result="rejected"}'] == 1.0
    assert after["meshward_policy_seconds_since_fetch"] == 0.0  # the rejected read was a read
    assert after['meshward_decision_log_lines_total{result="written"}'] == 0.0
