"""The metric names meshward's code defines, found by reading its source.

Every call in the product packages that builds a metric — ``Counter(...)``,
``Gauge(...)``, ``Histogram(...)``, ``Summary(...)``, ``Info(...)``, ``Enum(...)``
or a ``*MetricFamily(...)`` in a custom collector — with a literal name as its
first argument is a defined metric. Reading the source (rather than
instantiating) finds collectors that need live objects to be built too.
The exported sample names follow: ``_total`` for counters,
``_bucket``/``_sum``/``_count`` for histograms, ``_info`` for info metrics.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from tests.support.cli import REPO

__all__ = ["MetricFamily", "defined_families", "exported_names"]

PACKAGES = ("meshward", "authz", "ca")
_TYPES = {
    "Counter": "counter",
    "CounterMetricFamily": "counter",
    "Gauge": "gauge",
    "GaugeMetricFamily": "gauge",
    "Histogram": "histogram",
    "BulkHistogram": "histogram",  # authz.observe.tally: a Histogram fed in bulk
    "HistogramMetricFamily": "histogram",
    "Summary": "summary",
    "SummaryMetricFamily": "summary",
    "Info": "info",
    "InfoMetricFamily": "info",
    "Enum": "stateset",
    "StateSetMetricFamily": "stateset",
}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


@dataclass(frozen=True)
class MetricFamily:
    name: str
    type: str
    module: str

    @property
    def samples(self) -> set[str]:
        return {self.name + s for s in _SUFFIXES.get(self.type, ("",))}


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def defined_families() -> list[MetricFamily]:
    out: dict[str, MetricFamily] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                kind = _TYPES.get(_called_name(node))
                first = node.args[0]
                if kind and isinstance(first, ast.Constant) and isinstance(first.value, str):
                    name = first.value.removesuffix("_total") if kind == "counter" else first.value
                    module = str(path.relative_to(REPO))
                    out[name] = MetricFamily(name, kind, module)
    return sorted(out.values(), key=lambda f: f.name)


def exported_names() -> set[str]:
    return set().union(*(f.samples for f in defined_families()))
