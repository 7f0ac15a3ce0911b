"""The metric names meshward's code defines, found by instantiating its metric sets.

Every ``metrics.py`` module in the product packages is imported, and every
class in it that takes a ``registry`` is built on a fresh registry; the
families it registers give the exported sample names (``_total`` for
counters, ``_bucket``/``_sum``/``_count`` for histograms, ``_info`` for info).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from tests.support.cli import REPO

__all__ = ["MetricFamily", "defined_families", "exported_names"]

PACKAGES = ("meshward", "authz", "ca")


@dataclass(frozen=True)
class MetricFamily:
    name: str
    type: str
    documentation: str
    module: str

    @property
    def samples(self) -> set[str]:
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"),
            "info": ("_info",),
            "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        }.get(self.type, ("",))
        return {self.name + s for s in suffixes}


def _metric_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("metrics.py")):
            names.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return names


def defined_families() -> list[MetricFamily]:
    out: dict[str, MetricFamily] = {}
    for module_name in _metric_modules():
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module_name:
                continue
            try:
                parameters = inspect.signature(cls).parameters
            except (TypeError, ValueError):
                continue
            if "registry" not in parameters:
                continue
            registry = CollectorRegistry()
            cls(registry=registry)
            for family in registry.collect():
                out[family.name] = MetricFamily(
                    family.name, family.type, family.documentation, module_name
                )
    return sorted(out.values(), key=lambda f: f.name)


def exported_names() -> set[str]:
    return set().union(*(f.samples for f in defined_families()))
