"""``meshward policy test --filter``, coverage and ``--junit``, run as a CI job runs them."""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree

from tests.support.cli import REPO, meshward


def _copy(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    shutil.copytree(REPO / "policies", directory)
    return directory


def test_filter_runs_only_matching_cases(tmp_path: Path) -> None:
    result = meshward("policy", "test", str(REPO / "policies"), "--filter", "HOSTNAME", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("PASS ") == 3
    assert "3 passed, 0 failed" in result.stdout
    none = meshward("policy", "test", str(REPO / "policies"), "--filter", "no such case")
    assert none.returncode == 1
    assert "0 passed, 0 failed" in none.stdout


def test_coverage_names_policies_no_test_exercises(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "extra.cedar").write_text(
        '@id("nobody-tests-me")\npermit (principal, action == Action::"PATCH", resource);\n'
    )
    result = meshward("policy", "test", str(directory))
    assert result.returncode == 0, result.stderr
    assert "not exercised: nobody-tests-me" in result.stdout


def test_junit_xml_for_ci(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    broken = (directory / "tests" / "forward-auth.yaml").read_text()
    (directory / "tests" / "forward-auth.yaml").write_text(
        broken.replace("expect: deny", "expect: allow", 1)
    )
    out = tmp_path / "junit.xml"
    result = meshward("policy", "test", str(directory), "--junit", str(out))
    assert result.returncode == 1
    root = ElementTree.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1"
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["staff may not delete through the hostname either"]
    assert int(root.get("tests", "0")) >= 39
