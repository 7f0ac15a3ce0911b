"""The decision log as a decider observer: every decision, even one whose caller gave up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from authz.engine.evaluation import Engine
from authz.observe.decisionlog import DecisionLog, RotatingFileSink
from tests.unit.authz.test_decider import Recorder, engine, facts, make_decider

__all__ = ["engine"]  # the module-scoped engine fixture, shared with test_decider


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_decisions_are_logged_with_replayable_requests(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(RotatingFileSink(path)) as dlog:
        decider = make_decider(engine, Recorder())
        decider.add_observer(dlog)
        allowed = await decider.decide(facts(headers={"cookie": "s=1", "x-tenant": "t"}))
        denied = await decider.decide(facts("DELETE"))
    first, second = _lines(path)
    assert first["decision_id"] == allowed.decision_id and first["decision"] == "allow"
    assert second["decision_id"] == denied.decision_id and second["decision"] == "deny"
    # Only allow-listed headers keep their values in the log.
    assert first["context"]["http"]["headers"] == {"cookie": "[redacted]", "x-tenant": "[redacted]"}
    assert first["replayable"] and first["policy_version"] == engine.version


async def test_a_cancelled_check_is_still_logged(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(RotatingFileSink(path)) as dlog:
        decider = make_decider(engine, Recorder())
        decider.add_observer(dlog)

        class Hang:  # a cache that never answers: the caller gives up first
            async def get_or_evaluate(self, request: object, engine_: object) -> Any:
                await asyncio.sleep(3600)

        decider.cache = Hang()
        task = asyncio.create_task(decider.decide(facts()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (line,) = _lines(path)
    assert line["decision"] == "deny"
    assert line["errors"] == ["cancelled"]
    assert line["replayable"] is True
