"""Prometheus metrics of the policy source, read from the gate at scrape time.

A collector, not counters updated on the decision path: the gate already
counts its reloads, so a scrape turns its state into metric families.
Register it on the PDP's registry: ``registry.register(PolicyCollector(...))``.

- ``meshward_policy_info{source,version}`` 1 for the active version
- ``meshward_policy_active`` 1 when a version is active, else 0 (denying all)
- ``meshward_policy_reloads_total{result}`` reloads by outcome
- ``meshward_policy_seconds_since_fetch`` since the source was last read (NaN: never)
- ``meshward_policy_shadow_total{result}`` shadow comparisons by result
- ``meshward_policy_shadow_disagreements_total{transition}``
- ``meshward_decision_log_lines_total{result}`` written, dropped, failed
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from authz.lifecycle.shadow import Shadow
from authz.observe.decisionlog import DecisionLog
from authz.sources.gate import Gate, Outcome

__all__ = ["PolicyCollector"]


class PolicyCollector(Collector):
    def __init__(
        self,
        gate: Gate[Any],
        *,
        shadow: Shadow | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self._gate = gate
        self._shadow = shadow
        self._decision_log = decision_log

    def collect(self) -> Iterator[Any]:
        status = self._gate.status()
        info = InfoMetricFamily("meshward_policy", "The active policy version", labels=())
        if status.active_version is not None:
            info.add_metric([], {"source": status.source, "version": status.active_version})
        yield info
        yield GaugeMetricFamily(
            "meshward_policy_active",
            "1 when a policy version is active; 0 means every request is denied",
            value=1.0 if status.active_version is not None else 0.0,
        )
        reloads = CounterMetricFamily(
            "meshward_policy_reloads", "Policy reloads by result", labels=["result"]
        )
        for outcome in Outcome:
            reloads.add_metric([outcome.value], float(status.reloads.get(outcome.value, 0)))
        yield reloads
        since = self._gate.seconds_since_fetch()
        yield GaugeMetricFamily(
            "meshward_policy_seconds_since_fetch",
            "Seconds since the policy source was last read successfully",
            value=math.nan if since is None else since,
        )
        if self._shadow is not None:
            results = CounterMetricFamily(
                "meshward_policy_shadow",
                "Shadow policy comparisons by result",
                labels=["result"],
            )
            for result in ("agree", "disagree", "error", "dropped"):
                results.add_metric([result], float(self._shadow.results.get(result, 0)))
            yield results
            transitions = CounterMetricFamily(
                "meshward_policy_shadow_disagreements",
                "Shadow disagreements by transition (active->shadow)",
                labels=["transition"],
            )
            for transition in ("allow->deny", "deny->allow"):
                count = self._shadow.disagreements.get(transition, 0)
                transitions.add_metric([transition], float(count))
            yield transitions
        if self._decision_log is not None:
            lines = CounterMetricFamily(
                "meshward_decision_log_lines", "Decision log lines by result", labels=["result"]
            )
            dlog = self._decision_log
            for result, count in (
                ("written", dlog.written),
                ("dropped", dlog.dropped),
                ("failed", dlog.failed),
            ):
                lines.add_metric([result], float(count))
            yield lines
