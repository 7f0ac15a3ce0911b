"""The gate's ``prepare`` for Cedar bundles: load, validate, test, build the engine.

A version passes when :func:`authz.bundle.load_bundle` finds no problem (every
policy parses, validates against the schema, the entities and test files
load) and every case of :func:`authz.policytest.run_tests` passes; anything
else raises :class:`~authz.sources.errors.Rejected` with every problem.
"""

from __future__ import annotations

from pathlib import Path

from authz.bundle import load_bundle
from authz.engine import Engine
from authz.errors import BundleError, Problem
from authz.policytest import run_tests
from authz.sources.errors import Rejected

__all__ = ["prepare_engine"]


def prepare_engine(root: Path, version: str) -> Engine:
    """The engine of the bundle in ``root`` stamped ``version``, if it passes the gate."""
    try:
        bundle = load_bundle(root, version=version)
    except BundleError as exc:
        raise Rejected(exc.problems, stage="bundle") from exc
    engine = Engine(bundle)
    report = run_tests(bundle, engine)
    if not report.ok:
        failures = [
            Problem(r.file, r.case.line, 1, "test-failed", f"{r.case.name}: {r.failure}")
            for r in report.results
            if r.failure is not None
        ]
        raise Rejected(failures, stage="test")
    return engine
