"""``meshward policy test --filter``, coverage and ``--junit``, run as a CI job runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

from tests.support.cli import REPO, meshward
from tests.support.gitrepo import PolicyRepo
from tests.support.net import free_port


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


def test_policy_init_scaffolds_a_repository_that_passes(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    created = meshward("policy", "init", str(directory))
    assert created.returncode == 0, created.stderr
    assert (directory / "schema.cedarschema").read_text() == (
        REPO / "policies" / "schema.cedarschema"
    ).read_text()
    assert meshward("policy", "validate", str(directory)).returncode == 0
    tested = meshward("policy", "test", str(directory))
    assert tested.returncode == 0 and "3 passed, 0 failed" in tested.stdout
    again = meshward("policy", "init", str(directory))
    assert again.returncode == 2 and "not an empty directory" in again.stderr


def test_who_can_lists_principals_from_the_entities_and_policies() -> None:
    result = meshward(
        "policy", "who-can", "--policies", str(REPO / "policies"),
        "--resource", "spiffe://meshward.local/ns/shop/sa/catalog", "--action", "GET",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = {a["principal"]: a for a in map(json.loads, result.stdout.splitlines())}
    frontend = answers['Workload::"spiffe://meshward.local/ns/shop/sa/frontend"']
    assert frontend["answer"] == "allow" and frontend["policies"] == ["frontend-reads-catalog"]
    groups = {k.rsplit("|", 1)[-1]: v for k, v in answers.items() if "Group::" in k}
    assert groups['staff"']["answer"] == "allow"
    assert groups['customers"']["answer"] == "conditional"
    assert 'Workload::"spiffe://meshward.local/ns/shop/sa/payments"' not in answers
    nobody = meshward(
        "policy", "who-can", "--policies", str(REPO / "policies"),
        "--resource", 'Service::"nowhere"', "--action", "DELETE",
    )  # fmt: skip
    assert nobody.returncode == 1 and nobody.stdout == ""


def test_git_repository_root_without_the_subdir_is_one_short_error(tmp_path: Path) -> None:
    repo = PolicyRepo(tmp_path / "git")
    files = {
        f"policies/{p.relative_to(REPO / 'policies').as_posix()}": p.read_text()
        for p in (REPO / "policies").rglob("*")
        if p.is_file()
    }
    repo.commit({"README.md": "# policies\n", **files})
    result = meshward(
        "--state-dir", str(tmp_path / "state"), "pdp", "serve", "--policies", repo.url,
        "--grpc-addr", f"127.0.0.1:{free_port()}", "--http-addr", f"127.0.0.1:{free_port()}",
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "fetching policies for the first time" in result.stderr  # progress on a slow fetch
    last = result.stderr.strip().splitlines()[-1]
    assert 'policy_source.subdir = "policies"' in last
    assert len(last) < 600
