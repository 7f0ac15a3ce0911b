"""The decider with the real tiered cache: the decision log names the tier that answered."""

from __future__ import annotations

import json
from pathlib import Path

from authz.cache.tiered import TieredCache
from authz.engine.evaluation import Engine
from authz.observe.decisionlog import DecisionLog, RotatingFileSink
from meshward.clock import FixedClock
from tests.unit.authz.test_decider import NOW, Recorder, engine, facts, make_decider

__all__ = ["engine"]  # the module-scoped engine fixture of test_decider


async def test_log_names_the_tier(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    recorder = Recorder()
    with DecisionLog(RotatingFileSink(path)) as dlog:
        decider = make_decider(engine, recorder, cache=TieredCache(FixedClock(NOW)))
        decider.add_observer(dlog)
        for rid in ("1", "2"):  # x-request-id is read by no policy: the second is a hit
            await decider.decide(facts(headers={"x-request-id": rid}))
        await decider.decide(facts(path="/other"))  # the path is read: evaluated again
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["cache"] for line in lines] == ["none", "local", "none"]
    assert [r.cache_tier for r in recorder.records] == ["none", "local", "none"]
    assert lines[0]["decision"] == lines[1]["decision"] == "allow"
