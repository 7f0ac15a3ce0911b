"""Run policy test suites against a bundle and report.

The suite format (YAML, JSON Schema in ``testsuite.schema.json``) is parsed by
:mod:`authz.lifecycle.testsuite` when the bundle loads; :func:`run_tests` evaluates every
case with the bundle's engine and returns a :class:`TestReport` whose
``summary`` is the ``N passed, N failed`` line of ``meshward policy test``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree

from authz.engine.bundle import PolicyBundle
from authz.engine.evaluation import Engine
from authz.engine.model import Decision
from authz.lifecycle.testsuite import (
    TestCase,
    TestSuite,
    case_request,
    load_test_schema,
    parse_suite,
)

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

    def uncovered(self, policy_ids: Sequence[str]) -> list[str]:
        """Policies that determined no case's decision (no test exercises them)."""
        used = {reason for r in self.results for reason in r.decision.reasons}
        return [p for p in policy_ids if p not in used]

    def junit_xml(self, name: str = "meshward policy test") -> str:
        """The report as JUnit XML (one testsuite per test file), for CI systems."""
        root = ElementTree.Element(
            "testsuites", name=name, tests=str(len(self.results)), failures=str(self.failed)
        )
        by_file: dict[str, list[CaseResult]] = {}
        for result in self.results:
            by_file.setdefault(result.file, []).append(result)
        for file, results in by_file.items():
            failures = sum(1 for r in results if not r.passed)
            suite = ElementTree.SubElement(
                root, "testsuite", name=file, tests=str(len(results)), failures=str(failures)
            )
            for result in results:
                case = ElementTree.SubElement(
                    suite,
                    "testcase",
                    classname=result.suite,
                    name=result.case.name,
                    file=result.file,
                    line=str(result.case.line),
                )
                if result.failure is not None:
                    failure = ElementTree.SubElement(case, "failure", message=result.failure)
                    failure.text = result.failure
        return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


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


def case_matches(pattern: str, file: str, suite: str, case: str) -> bool:
    """``--filter``: a case-insensitive glob (``*``, ``?``) or substring of
    ``FILE SUITE / CASE``."""
    haystack = f"{file} {suite} / {case}".lower()
    needle = pattern.lower()
    if any(c in needle for c in "*?["):
        return fnmatch.fnmatchcase(haystack, needle if needle.startswith("*") else f"*{needle}*")
    return needle in haystack


def run_tests(
    bundle: PolicyBundle, engine: Engine | None = None, *, pattern: str | None = None
) -> TestReport:
    """Evaluate every case of every suite in ``bundle`` (only those ``pattern`` matches)."""
    engine = engine or Engine(bundle)
    known = frozenset(bundle.policy_ids)
    results = []
    for suite in bundle.tests:
        for case in suite.cases:
            if pattern is not None and not case_matches(pattern, suite.file, suite.name, case.name):
                continue
            decision = engine.evaluate(case.request)
            failure = _check(case, decision, known)
            results.append(CaseResult(suite.file, suite.name, case, decision, failure))
    return TestReport(tuple(results))
