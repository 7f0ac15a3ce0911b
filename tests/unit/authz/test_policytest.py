from __future__ import annotations

import pytest

from authz.engine.bundle import load_bundle
from authz.engine.model import Effect, EntityUid
from authz.errors import BundleError
from authz.lifecycle.policytest import load_test_schema, parse_suite, run_tests
from tests.support.cli import REPO

POLICIES = """
@id("w-read")
permit (principal == Workload::"spiffe://td/ns/a/sa/web", action in Action::"read", resource);
@id("no-admin")
forbid (principal, action, resource) when { context has path && context.path like "/admin*" };
"""

SUITE = """
name: small
cases:
  - name: web reads
    principal: Workload::"spiffe://td/ns/a/sa/web"
    action: Action::"GET"
    resource: Service::"s"
    expect: allow
    reasons: [w-read]
  - name: web admin
    principal: Workload::"spiffe://td/ns/a/sa/web"
    action: Action::"GET"
    resource: Service::"s"
    context: {path: /admin}
    expect: deny
    reasons: [no-admin]
  - name: wrong expectation
    principal: User::"u"
    action: Action::"GET"
    resource: Service::"s"
    expect: allow
  - name: wrong reasons
    principal: Workload::"spiffe://td/ns/a/sa/web"
    action: Action::"HEAD"
    resource: Service::"s"
    expect: allow
    reasons: [no-admin]
  - name: unknown reason id
    principal: Workload::"spiffe://td/ns/a/sa/web"
    action: Action::"HEAD"
    resource: Service::"s"
    expect: allow
    reasons: [w-read, ghost]
"""


def test_run_tests_reports_passes_and_failures(make_bundle) -> None:
    bundle = load_bundle(make_bundle({"p.cedar": POLICIES, "tests/small.yaml": SUITE}))
    report = run_tests(bundle)
    outcome = {r.case.name: r.passed for r in report.results}
    assert outcome == {
        "web reads": True,
        "web admin": True,
        "wrong expectation": False,
        "wrong reasons": False,
        "unknown reason id": False,
    }
    assert report.summary == "2 passed, 3 failed"
    assert not report.ok
    failed = {r.case.name: r for r in report.results if not r.passed}
    assert failed["wrong expectation"].decision.effect is Effect.DENY
    assert failed["wrong expectation"].case.line == 17
    assert all(r.file == "tests/small.yaml" and r.suite == "small" for r in report.results)


def test_raw_http_request_maps_like_the_pdp() -> None:
    suite = parse_suite(
        "t.yaml",
        """
cases:
  - name: raw
    request:
      method: post
      destination: spiffe://td/ns/a/sa/api
      path: /pkg.Svc/Do?x=1
      query: x=1
      headers: {Content-Type: application/grpc, X-Tenant: t1}
      peer: spiffe://td/ns/a/sa/web
      claims: {sub: alice}
    context: {extra: 1}
    expect: deny
  - name: anonymous
    request: {method: GET, host: svc}
    expect: deny
""",
    )
    raw, anonymous = (case.request for case in suite.cases)
    assert raw.principal == EntityUid("Workload", "spiffe://td/ns/a/sa/web")
    assert raw.action == EntityUid("Action", "POST")
    assert raw.resource == EntityUid("Service", "spiffe://td/ns/a/sa/api")
    assert raw.context["http"]["headers"] == {"content-type": "application/grpc", "x-tenant": "t1"}
    assert raw.context["peer"] == {"spiffe_id": "spiffe://td/ns/a/sa/web", "trust_domain": "td"}
    assert raw.context["grpc"] == {"service": "pkg.Svc", "method": "Do"}
    assert raw.context["token"] == {"claims": {"sub": "alice"}}
    assert raw.context["extra"] == 1
    assert anonymous.principal == EntityUid("Anonymous", "anonymous")
    assert anonymous.resource == EntityUid("Service", "svc")
    assert "peer" not in anonymous.context


def test_groups_shorthand_and_parents() -> None:
    suite = parse_suite(
        "t.yaml",
        'cases:\n  - {name: g, principal: User::"u", groups: [a], parents: [Group::"b"],\n'
        '     attributes: {email: e}, action: Action::"GET", resource: Service::"s",'
        " expect: allow}\n",
    )
    (case,) = suite.cases
    assert case.request.identity.parents == (EntityUid("Group", "b"), EntityUid("Group", "a"))
    assert case.request.identity.attributes["email"] == "e"


@pytest.mark.parametrize(
    "text",
    [
        "cases: []\n",
        "cases:\n  - {name: x, expect: allow}\n",
        'cases:\n  - {name: x, action: Action::"GET", expect: allow}\n',
        "cases:\n  - {name: x, request: {method: GET}, expect: allow}\n",
        "cases:\n  - {name: x, request: {host: h}, expect: allow}\n",
        'cases:\n  - {name: x, request: {method: GET, host: h, peer: "http://x"}, expect: deny}\n',
        "other: 1\n",
        "- just a list\n",
    ],
)
def test_invalid_suites_are_bundle_problems(text) -> None:
    with pytest.raises(BundleError) as info:
        parse_suite("t.yaml", text)
    assert all(p.file == "t.yaml" and p.line >= 1 for p in info.value.problems)
    assert {p.code for p in info.value.problems} <= {"bad-test", "bad-yaml"}


def test_schema_is_shipped_and_is_a_json_schema() -> None:
    schema = load_test_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "cases" in schema["required"]


def test_the_example_suites_pass() -> None:
    report = run_tests(load_bundle(REPO / "policies"))
    assert report.ok, [r.failure for r in report.results if not r.passed]
    assert report.passed >= 25
