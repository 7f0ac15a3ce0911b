"""Policy bundles for tests: the shipped example repository and ways to break it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from authz.errors import Problem, Rejected
from tests.support.cli import REPO

__all__ = [
    "FAILING_TEST",
    "SCHEMA_VIOLATION",
    "SYNTAX_ERROR",
    "TIGHTEN_ORDERS_READS_CATALOG",
    "example_files",
    "load_config",
]


def example_files(prefix: str = "") -> dict[str, str]:
    """Every file of ``policies/`` (the example policy repository), keyed by path."""
    root = REPO / "policies"
    return {
        prefix + p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def load_config(root: Path, version: str) -> dict[str, Any]:
    """A :class:`~authz.sources.gate.Gate` loader whose bundle is one ``config.json``.

    A version whose ``config.json`` is not JSON is rejected at the ``bundle``
    stage, as a policy bundle that does not parse is.
    """
    try:
        return dict(json.loads((root / "config.json").read_text()))
    except ValueError as exc:
        raise Rejected(
            [Problem("config.json", 1, 1, "bad-json", str(exc))], stage="bundle"
        ) from exc


# A file that does not parse.
SYNTAX_ERROR = {"broken.cedar": 'permit (principal, action == Action::"GET"\n'}

# Parses, but reads a context attribute the schema does not have.
SCHEMA_VIOLATION = {
    "extra.cedar": (
        '@id("reads-unknown-attribute")\n'
        "permit (principal, action, resource)\n"
        "when { context.no_such_attribute == 1 };\n"
    )
}

# Valid policies, but a test case that cannot pass.
FAILING_TEST = {
    "tests/extra.yaml": (
        "name: a wrong expectation\n"
        "cases:\n"
        "  - name: frontend may delete the catalog (it may not)\n"
        '    principal: Workload::"spiffe://meshward.local/ns/shop/sa/frontend"\n'
        '    action: Action::"DELETE"\n'
        '    resource: Service::"spiffe://meshward.local/ns/shop/sa/catalog"\n'
        "    expect: allow\n"
    )
}


def _tightened() -> dict[str, str]:
    """The orders workload may read the catalog only under /products (one rule tightened,
    its test updated to match)."""
    path = Path("workloads.cedar")
    text = (REPO / "policies" / path).read_text(encoding="utf-8")
    old = (
        '@id("orders-reads-catalog")\n'
        "permit (\n"
        '  principal == Workload::"spiffe://meshward.local/ns/shop/sa/orders",\n'
        '  action in Action::"read",\n'
        '  resource == Service::"spiffe://meshward.local/ns/shop/sa/catalog"\n'
        ");"
    )
    if old not in text:
        raise RuntimeError("policies/workloads.cedar changed: update TIGHTEN_ORDERS_READS_CATALOG")
    new = old[: -len(";")] + '\nwhen { context has http && context.http.path like "/products*" };'
    tests = (REPO / "policies" / "tests" / "workloads.yaml").read_text(encoding="utf-8")
    case = "    expect: allow\n    reasons: [orders-reads-catalog]\n"
    if tests.count(case) != 1:
        raise RuntimeError("policies/tests/workloads.yaml changed: update the tightened test")
    # the pull request updates its test too: without a path the read is now denied
    tests = tests.replace(case, "    expect: deny\n")
    return {path.as_posix(): text.replace(old, new), "tests/workloads.yaml": tests}


TIGHTEN_ORDERS_READS_CATALOG = _tightened()
