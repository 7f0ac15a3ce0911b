"""Run policy test suites against a bundle and report.

The suite format (YAML, JSON Schema in ``testsuite.schema.json``) is parsed by
:mod:`authz.testsuite` when the bundle loads; :func:`run_tests` evaluates every
case with the bundle's engine and returns a :class:`TestReport` whose
``summary`` is the ``N passed, N failed`` line of ``meshward policy test``.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.bundle import PolicyBundle
from authz.engine import Engine
from authz.model import Decision
from authz.testsuite import TestCase, TestSuite, case_request, load_test_schema, parse_suite

__all__ = [
    "CaseResult",
    "TestCase",
    "TestReport",
    "TestSuite",
    "case_request",
    "load_test_schema",
    "parse_suite",
    "run_tests",
]


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    suite: str
    case: TestCase
    decision: Decision
    failure: str | None

    @property
    def passed(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class TestReport:
    __test__ = False

    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


def _check(case: TestCase, decision: Decision, known: frozenset[str]) -> str | None:
    if decision.effect is not case.expect:
        detail = f"; errors: {list(decision.errors)}" if decision.errors else ""
        return (
            f"expected {case.expect.value}, got {decision.effect.value} "
            f"(reasons {list(decision.reasons)}){detail}"
        )
    if case.reasons is not None:
        unknown = sorted(set(case.reasons) - known)
        if unknown:
            return f"expected reasons name no policy: {unknown}"
        if tuple(sorted(decision.reasons)) != case.reasons:
            return f"expected reasons {list(case.reasons)}, got {list(decision.reasons)}"
    return None


def run_tests(bundle: PolicyBundle, engine: Engine | None = None) -> TestReport:
    """Evaluate every case of every suite in ``bundle``."""
    engine = engine or Engine(bundle)
    known = frozenset(bundle.policy_ids)
    results = []
    for suite in bundle.tests:
        for case in suite.cases:
            decision = engine.evaluate(case.request)
            failure = _check(case, decision, known)
            results.append(CaseResult(suite.file, suite.name, case, decision, failure))
    return TestReport(tuple(results))
