"""The console in real Chromium: pages, the playground against the live PDP, escaping, keyboard."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import REPO
from tests.support.console import Mesh, chromium, running_mesh

PAGES = ("/", "/policies", "/playground", "/decisions", "/identity")
TD = "spiffe://meshward.local/ns/shop/sa/"
HOSTILE_ID = '<script>window.__pwned = 1</script>"x'


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("console")
    policies = tmp / "policies"
    shutil.copytree(REPO / "policies", policies)
    # A policy whose id holds markup: the console must show it as text.
    (policies / "hostile.cedar").write_text(
        f"@id({json.dumps(HOSTILE_ID)})\n"
        'forbid (principal == Workload::"spiffe://meshward.local/ns/nowhere/sa/none", '
        "action, resource);\n"
    )
    with running_mesh(tmp, policies=policies) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def _requests() -> list[dict[str, Any]]:
    """Twenty requests over the example's workloads, people, methods and services."""
    principals = [
        f'Workload::"{TD}frontend"',
        f'Workload::"{TD}orders"',
        'User::"https://id.meshward.local|alice"',
        'Anonymous::"anonymous"',
    ]
    combos = itertools.product(principals, ("GET", "POST"), ("catalog", "orders", "payments"))
    out = []
    for principal, method, service in itertools.islice(combos, 20):
        context: dict[str, Any] = {
            "http": {
                "method": method,
                "host": service,
                "path": "/admin/x" if service == "payments" else "/api/items",
                "query": "",
                "headers": {},
            }
        }
        if principal.startswith("User"):
            context["peer"] = {"spiffe_id": f"{TD}frontend", "trust_domain": "meshward.local"}
        out.append(
            {
                "principal": principal,
                "action": f'Action::"{method}"',
                "resource": f'Service::"{TD}{service}"',
                "context": context,
            }
        )
    return out


def _decide(
    page: Any, mesh: Mesh, doc: dict[str, Any], edit: tuple[str, str] | None = None
) -> None:
    page.goto(f"{mesh.console_url}/playground")
    if edit is not None:
        page.select_option("#file", edit[0])
    page.fill("#principal", doc["principal"])
    page.fill("#action", doc["action"])
    page.fill("#resource", doc["resource"])
    page.fill("#context", json.dumps(doc.get("context", {})))
    if edit is not None:
        page.fill("#policy_text", edit[1])
    page.click("form.playground button[type=submit]")
    page.wait_for_selector("[data-testid=live]")


def _reasons(page: Any, testid: str) -> list[str]:
    text = page.inner_text(f"[data-testid={testid}]").strip()
    return sorted(r.strip() for r in text.split(",") if r.strip())


def test_every_page_loads_without_console_errors(page: Any, mesh: Mesh, tmp_path: Path) -> None:
    for path in PAGES:
        response = page.goto(mesh.console_url + path)
        assert response.status == 200, path
        assert "content-security-policy" in response.headers
        page.screenshot(path=str(tmp_path / f"{path.strip('/') or 'overview'}.png"), full_page=True)
    assert page.errors == []
    assert len(list(tmp_path.glob("*.png"))) == len(PAGES)
    page.goto(mesh.console_url + "/policies")
    assert page.locator("code.policy-id", has_text="frontend-reads-catalog").count() == 1
    assert page.locator("svg.schema text", has_text="Workload").count() == 1


def test_playground_agrees_with_the_decision_api(page: Any, mesh: Mesh) -> None:
    seen = set()
    for doc in _requests():
        expected = mesh.authorize(doc)
        _decide(page, mesh, doc)
        for column in ("live", "whatif"):
            assert page.inner_text(f"[data-testid={column}-decision]") == expected["decision"], doc
            assert _reasons(page, f"{column}-reasons") == sorted(expected["reasons"]), doc
        seen.add(expected["decision"])
    assert seen == {"allow", "deny"}
    assert page.errors == []


def test_an_edit_changes_the_what_if_and_not_the_live_decision(page: Any, mesh: Mesh) -> None:
    doc = _requests()[0]  # the frontend reads the catalog: allowed
    assert mesh.authorize(doc)["decision"] == "allow"
    page.goto(f"{mesh.console_url}/playground?file=workloads.cedar")
    text = page.input_value("#policy_text")
    edited = text + '\n@id("what-if-block")\nforbid (principal, action, resource);\n'
    _decide(page, mesh, doc, edit=("workloads.cedar", edited))
    assert page.inner_text("[data-testid=live-decision]") == "allow"
    assert page.inner_text("[data-testid=whatif-decision]") == "deny"
    assert "what-if-block" in _reasons(page, "whatif-reasons")
    assert mesh.authorize(doc)["decision"] == "allow"  # nothing live changed


def test_markup_in_a_principal_or_policy_id_is_shown_as_text(page: Any, mesh: Mesh) -> None:
    doc = {
        "principal": f"Workload::{json.dumps(HOSTILE_ID)}",
        "action": 'Action::"GET"',
        "resource": f'Service::"{TD}catalog"',
        "context": {},
    }
    _decide(page, mesh, doc)
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{mesh.console_url}/policies?q=pwned")
    assert page.locator("code.policy-id").inner_text() == HOSTILE_ID
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{mesh.console_url}/decisions")
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


FOCUSABLE = "a[href], button, input:not([type=hidden]), select, textarea, summary"
COUNT_JS = f"""() => [...document.querySelectorAll('{FOCUSABLE}')]
    .filter(e => e.offsetParent !== null).length"""
ACTIVE_JS = f"""() => {{
    const e = document.activeElement;
    return e && e.matches('{FOCUSABLE}') ? [...document.querySelectorAll('*')].indexOf(e) : -1;
}}"""


def test_keyboard_reaches_every_control(page: Any, mesh: Mesh) -> None:
    for path in PAGES:
        page.goto(mesh.console_url + path)
        total = page.evaluate(COUNT_JS)
        reached = set()
        for _ in range(total + 3):
            page.keyboard.press("Tab")
            reached.add(page.evaluate(ACTIVE_JS))
        reached.discard(-1)
        assert total > 3, path
        assert len(reached) >= total, (path, total, len(reached))


def test_identity_shows_the_bundle_rotation_entries_and_live_svids(page: Any, mesh: Mesh) -> None:
    page.goto(mesh.console_url + "/identity")
    assert page.title() == "Identity · meshward console"
    assert page.locator("svg.timeline rect.root").count() == 1
    assert page.locator("svg.timeline rect.signing").count() >= 1
    assert page.inner_text("[data-testid=rotation-stage]").startswith(("steady", "due", "prepared"))
    entries = page.inner_text("section[aria-labelledby=entries-h]")
    assert "spiffe://meshward.local/ns/shop/sa/frontend" in entries
    svids = page.inner_text("section[aria-labelledby=svids-h]")
    assert "spiffe://meshward.local/" in svids
    assert page.errors == []
