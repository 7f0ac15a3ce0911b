from __future__ import annotations

import json
import re
import shutil
from typing import Any

from tests.support.cli import REPO, meshward

FRONTEND = "spiffe://meshward.local/ns/shop/sa/frontend"
CATALOG = "spiffe://meshward.local/ns/shop/sa/catalog"


def test_policy_test_on_the_example_policies_passes() -> None:
    out = meshward("policy", "test", "policies")
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"(\d+) passed, 0 failed", last)
    assert match and int(match.group(1)) >= 25


def test_policy_validate_and_fmt_check_on_the_examples() -> None:
    out = meshward("policy", "validate", "policies")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: policies: ")
    fmt = meshward("policy", "fmt", "policies", "--check")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_policy_test_failure_exits_1(tmp_path) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "p")
    suite = tmp_path / "p" / "tests" / "wrong.yaml"
    suite.write_text(
        "cases:\n"
        "  - name: wrong on purpose\n"
        f'    principal: Workload::"{FRONTEND}"\n'
        '    action: Action::"GET"\n'
        f'    resource: Service::"{CATALOG}"\n'
        "    expect: deny\n"
        "  - name: wrong reasons\n"
        f'    principal: Workload::"{FRONTEND}"\n'
        '    action: Action::"GET"\n'
        f'    resource: Service::"{CATALOG}"\n'
        "    expect: allow\n"
        "    reasons: [no-such-policy]\n"
    )
    out = meshward("policy", "test", str(tmp_path / "p"))
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"\d+ passed, 2 failed", lines[-1])
    assert sum(1 for line in lines if line.startswith("FAIL tests/wrong.yaml:")) == 2


def test_bad_bundle_exits_2_naming_file_line_column(tmp_path) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "p")
    (tmp_path / "p" / "broken.cedar").write_text(
        "permit (principal, action, resource);\npermit (principal == , action, resource);\n"
    )
    (tmp_path / "p" / "users.cedar").write_bytes(b"\xff\xfe")
    for command in (["policy", "validate"], ["policy", "test"], ["check", "--policies"]):
        out = meshward(*command, str(tmp_path / "p"), stdin="{}")
        if command[0] == "check":
            # bad input is reported before the bundle is read
            assert out.returncode == 2
            continue
        assert out.returncode == 2
        assert f"{tmp_path / 'p'}/broken.cedar:2:22: syntax-error" in out.stderr
        assert f"{tmp_path / 'p'}/users.cedar:1:1: not-utf8" in out.stderr
        assert "Traceback" not in out.stderr


def test_fmt_rewrites_and_check_reports(tmp_path) -> None:
    (tmp_path / "a.cedar").write_text("permit(principal,action,resource) when {context.a==1};")
    check = meshward("policy", "fmt", str(tmp_path), "--check")
    assert check.returncode == 1
    assert "a.cedar" in check.stdout
    assert "permit(principal" in (tmp_path / "a.cedar").read_text()
    fixed = meshward("policy", "fmt", str(tmp_path))
    assert fixed.returncode == 0
    assert (tmp_path / "a.cedar").read_text().startswith("permit (principal, action, resource)")
    assert meshward("policy", "fmt", str(tmp_path), "--check").returncode == 0
    (tmp_path / "b.cedar").write_text("permit (principal, action, resource\n")
    broken = meshward("policy", "fmt", str(tmp_path))
    assert broken.returncode == 2
    assert "b.cedar:1:" in broken.stderr


def _check(document: object) -> tuple[int, dict[str, Any] | None, str]:
    out = meshward("check", "--policies", "policies", stdin=json.dumps(document))
    body = json.loads(out.stdout) if out.stdout.strip() else None
    return out.returncode, body, out.stderr


def test_check_allow_deny_and_bad_input() -> None:
    code, body, _ = _check(
        {
            "principal": f'Workload::"{FRONTEND}"',
            "action": 'Action::"GET"',
            "resource": f'Service::"{CATALOG}"',
            "context": {},
        }
    )
    assert code == 0
    assert body == {"decision": "allow", "reasons": ["frontend-reads-catalog"], "errors": []}

    code, body, _ = _check(
        {
            "principal": 'User::"https://id.meshward.local|ada"',
            "parents": ['Group::"admins"'],
            "action": 'Action::"GET"',
            "resource": f'Service::"{CATALOG}"',
            "context": {"peer": {"spiffe_id": "spiffe://evil/x", "trust_domain": "evil"}},
        }
    )
    assert code == 1
    assert body == {"decision": "deny", "reasons": ["foreign-trust-domains"], "errors": []}

    bad: object
    for bad in ({"principal": "nope"}, [], {"principal": 'A::"a"', "action": 'B::"b"'}):
        code, body, err = _check(bad)
        assert code == 2
        assert body is None
        assert "bad request" in err


def test_check_maps_context_http_like_the_pdp() -> None:
    admin_api = {
        "principal": 'User::"https://id.meshward.local|sam"',
        "parents": [{"type": "Group", "id": "https://id.meshward.local|support"}],
        "action": 'Action::"GET"',
        "resource": 'Service::"spiffe://meshward.local/ns/shop/sa/payments"',
        "context": {
            "http": {"path": "/v1/charges%3F/../../%61dmin/x"},
            "peer": {"spiffe_id": FRONTEND, "trust_domain": "meshward.local"},
        },
    }
    code, body, _ = _check(admin_api)
    assert code == 1
    assert body is not None and body["reasons"] == ["payments-admin-api"]
    admin_api["context"]["http"] = {"path": "/admin%2Fx"}  # type: ignore[index]
    code, body, _ = _check(admin_api)
    assert (code, body) == (
        1,
        {"decision": "deny", "reasons": [], "errors": ["request:encoded_slash"]},
    )
    code, _, err = _check({**admin_api, "extra": True})
    assert code == 2 and "unknown fields: extra" in err


def test_check_reads_the_policies_setting_from_the_environment() -> None:
    document = {
        "principal": 'Anonymous::"anonymous"',
        "action": 'Action::"DELETE"',
        "resource": f'Service::"{CATALOG}"',
    }
    out = meshward(
        "check", stdin=json.dumps(document), env={"MESHWARD_PDP__POLICIES": str(REPO / "policies")}
    )
    assert out.returncode == 1
    assert json.loads(out.stdout)["reasons"] == ["no-anonymous-writes"]


def test_help_lists_the_commands() -> None:
    out = meshward("policy", "--help")
    assert out.returncode == 0
    for name in ("validate", "test", "fmt"):
        assert name in out.stdout
    assert meshward("check", "--help").returncode == 0


def _bad_table():
    import yaml

    data = REPO / "tests" / "unit" / "authz" / "data" / "bad_bundles.yaml"
    return yaml.safe_load(data.read_text())


BAD = _bad_table()


def test_every_bad_bundle_exits_2_naming_each_position(tmp_path) -> None:
    # One process validates every bad bundle of the table (and a good one).
    from tests.unit.authz.conftest import write_tree

    roots = []
    for number, case in enumerate(BAD["cases"]):
        roots.append(write_tree(tmp_path / f"b{number}", {**BAD["base"], **case["files"]}))
    good = write_tree(tmp_path / "good", BAD["base"])
    out = meshward("policy", "validate", *map(str, roots), str(good))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stdout.splitlines() == [
        line for line in out.stdout.splitlines() if str(good) in line
    ]
    assert out.stdout.startswith(f"ok: {good}: 1 policies")
    for root, case in zip(roots, BAD["cases"], strict=True):
        for file, line, column, code in case["problems"]:
            where = str(root) if file == "." else f"{root}/{file}"
            assert f"{where}:{line}:{column}: {code}: " in out.stderr, case["name"]
        count = len(case["problems"])
        assert f"meshward: {root}: {count} problem" in out.stderr
