"""Attack rows through every real proxy: nginx, Traefik, Caddy and HAProxy.

Each proxy runs from its config in ``deploy/`` in front of an upstream that
echoes what reached it, with a real ``meshward pdp serve`` deciding. Every row
states what must hold whatever the proxy does on its own: the decision is the
PDP's, client-sent identity and forwarding headers change nothing, a PDP that
does not answer is a refusal, and a path is decided exactly as the upstream
then serves it (checked on the path the upstream saw against the path the
PDP decided on, read from its decision log).
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.support.caddy import caddy_server
from tests.support.cli import REPO
from tests.support.nginx import nginx_server
from tests.support.pdp import PdpProcess, pdp_process
from tests.support.proxy import Target
from tests.support.traefik import traefik_server
from tests.support.upstream import Echoed, RawResponse, Upstream, echo_upstream, raw_request

SHOP = "spiffe://meshward.local/ns/shop/sa"
FRONTEND = f"{SHOP}/frontend"
ORDERS = f"{SHOP}/orders"
HOST = "catalog.shop.test"
OPEN_HOST = "open.shop.test"  # a service the frontend may do anything to

POLICY = f"""
@id("frontend-reads-catalog")
permit (principal == Workload::"{FRONTEND}", action in Action::"read",
        resource == Service::"{HOST}");

@id("catalog-admin-api")
forbid (principal, action, resource == Service::"{HOST}")
when {{ context has http && context.http.path like "/admin*" }};

@id("frontend-owns-open")
permit (principal == Workload::"{FRONTEND}", action, resource == Service::"{OPEN_HOST}");
"""

# Each returns a context manager that runs the proxy from deploy/ for a Target.
PROXIES: dict[str, Callable[[Path, Target], AbstractContextManager[Any]]] = {
    "caddy": caddy_server,
    "nginx": nginx_server,
    "traefik": traefik_server,
}


@dataclass
class Stack:
    name: str
    port: int
    pdp: PdpProcess
    upstream: Upstream
    decision_log: Path
    ids: Iterator[int]

    def token(self, workload: str = FRONTEND) -> str:
        claims = {"sub": workload, "aud": ["meshward", HOST], "exp": int(time.time()) + 300}
        return self.pdp.svid_key.sign(claims)

    def send(
        self,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        *,
        method: str = "GET",
        host: str = HOST,
        workload: str | None = FRONTEND,
        timeout: float = 10.0,
    ) -> tuple[RawResponse, Echoed | None]:
        """Send one request through the proxy; what came back, and what reached the upstream."""
        marker = f"{self.name}-{next(self.ids)}"
        lines = [("host", host), ("x-test-id", marker)]
        if workload is not None:
            lines.append(("authorization", f"Bearer {self.token(workload)}"))
        response = raw_request(
            self.port, target, [*lines, *(headers or [])], method=method, timeout=timeout
        )
        return response, self.upstream.find(marker)

    def decided(self, decision_id: str) -> dict[str, Any]:
        """The PDP's decision-log entry for ``decision_id``."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.decision_log.exists():
                for line in self.decision_log.read_text().splitlines():
                    entry = json.loads(line)
                    if entry["decision_id"] == decision_id:
                        return dict(entry)
            time.sleep(0.05)
        raise AssertionError(f"decision {decision_id} not in the decision log")


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PdpProcess, Path]]:
    work = tmp_path_factory.mktemp("pdp")
    policies = work / "policies"
    policies.mkdir()
    for name in ("schema.cedarschema", "entities.json"):
        (policies / name).write_text((REPO / "policies" / name).read_text())
    (policies / "catalog.cedar").write_text(POLICY)
    log = work / "decisions.jsonl"
    env = {"MESHWARD_DECISION_LOG__PATH": str(log)}
    with pdp_process(work / "pdp", policies=policies, env=env) as process:
        yield process, log


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with echo_upstream() as server:
        yield server


@pytest.fixture(scope="module", params=sorted(PROXIES))
def stack(
    request: pytest.FixtureRequest,
    pdp: tuple[PdpProcess, Path],
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    name: str = request.param
    process, log = pdp
    target = Target(f"127.0.0.1:{process.http_port}", upstream.port, HOST)
    with PROXIES[name](tmp_path_factory.mktemp(name), target) as running:
        yield Stack(name, running.port, process, upstream, log, itertools.count())


def _refused_json(response: RawResponse, status: int) -> str:
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    decision_id = response.json()["decision_id"]
    assert len(decision_id) == 32
    assert response.headers.get("x-meshward-decision-id") == decision_id
    return str(decision_id)


def test_allowed_reaches_the_upstream_with_the_decided_principal(stack: Stack) -> None:
    response, seen = stack.send("/items?page=2")
    assert response.status == 200, response.body
    assert seen is not None
    assert seen.target == "/items?page=2"
    assert seen.header("x-meshward-principal") == [f'Workload::"{FRONTEND}"']
    (decision_id,) = seen.header("x-meshward-decision-id")
    assert stack.decided(decision_id)["decision"] == "allow"
    assert seen.header("authorization") == []  # credentials stop at the proxy
    assert seen.header("host") == [HOST]


@pytest.mark.parametrize(
    ("method", "workload"), [("GET", ORDERS), ("DELETE", FRONTEND)], ids=["principal", "action"]
)
def test_denied_is_403_with_a_decision_id(stack: Stack, method: str, workload: str) -> None:
    response, seen = stack.send("/items", method=method, workload=workload)
    decision_id = _refused_json(response, 403)
    assert seen is None
    assert stack.decided(decision_id)["decision"] == "deny"


def test_no_credentials_is_401(stack: Stack) -> None:
    response, seen = stack.send("/items", workload=None)
    _refused_json(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert seen is None


FORGED_IDENTITY = {
    "xfcc-uri": [("x-forwarded-client-cert", f"By={HOST};URI={FRONTEND}")],
    "xfcc-behind-xff": [
        ("x-forwarded-for", "10.1.2.3"),
        ("x-real-ip", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
        ("x-forwarded-client-cert", f"URI={FRONTEND}"),
    ],
    "meshward-principal": [
        ("x-meshward-principal", f'Workload::"{FRONTEND}"'),
        ("x-meshward-decision-id", "0" * 32),
    ],
}


@pytest.mark.parametrize("forged", FORGED_IDENTITY.values(), ids=FORGED_IDENTITY)
def test_client_sent_identity_headers_do_not_authenticate(
    stack: Stack, forged: list[tuple[str, str]]
) -> None:
    response, seen = stack.send("/items", forged, workload=None)
    assert response.status == 401, response.body
    assert seen is None


def test_client_sent_identity_headers_do_not_reach_the_upstream(stack: Stack) -> None:
    forged = [
        ("x-meshward-principal", 'User::"admin"'),
        ("x-meshward-decision-id", "0" * 32),
        ("x-meshward-roles", "admin"),
        ("x-forwarded-client-cert", f"URI={ORDERS}"),
    ]
    response, seen = stack.send("/items", forged)
    assert response.status == 200, response.body
    assert seen is not None
    assert seen.header("x-meshward-principal") == [f'Workload::"{FRONTEND}"']
    assert seen.header("x-meshward-decision-id") != ["0" * 32]
    assert seen.header("x-forwarded-client-cert") == []


FORGED_REQUEST_LINE = {
    # The path, method or host the PDP is told about is the real one, whatever
    # forwarding headers the client adds.
    "uri": ("GET", "/admin/users", HOST, [
        ("x-forwarded-uri", "/items"), ("x-original-uri", "/items"),
        ("x-forwarded-prefix", "/items"), ("x-rewrite-url", "/items"),
    ]),
    "method": ("DELETE", "/items", HOST, [
        ("x-forwarded-method", "GET"), ("x-original-method", "GET"),
        ("x-http-method-override", "GET"),
    ]),
    "forwarded-host": ("DELETE", "/items", HOST, [
        ("x-forwarded-host", OPEN_HOST), ("x-original-host", OPEN_HOST),
        ("forwarded", f"host={OPEN_HOST}"),
    ]),
    "host": ("DELETE", "/items", OPEN_HOST, []),
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "host", "forged"), FORGED_REQUEST_LINE.values(), ids=FORGED_REQUEST_LINE
)
def test_client_sent_forwarding_headers_change_nothing(
    stack: Stack, method: str, path: str, host: str, forged: list[tuple[str, str]]
) -> None:
    response, seen = stack.send(path, forged, method=method, host=host)
    assert seen is None
    assert 400 <= response.status < 500, response.body


def test_pdp_stopped_fails_closed_within_a_bounded_time(stack: Stack) -> None:
    assert stack.pdp.process is not None
    pid = stack.pdp.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), never answers
    try:
        started = time.monotonic()
        response, seen = stack.send("/items", timeout=15)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert seen is None
    assert response.status >= 500, response.body
    assert elapsed < 5, f"{elapsed:.1f}s"


def _served(path: str) -> str:
    """The path a lenient upstream serves for ``path``: fully decoded, slashes
    merged, dot segments removed (what Starlette-style routing ends up at)."""
    decoded = unquote(path.partition("?")[0], errors="replace")
    merged = "/" + "/".join(s for s in decoded.split("/") if s)
    normal = posixpath.normpath(merged)
    return normal + "/" if decoded.endswith("/") and normal != "/" else normal


ADMIN, MALFORMED, SERVED = "admin", "malformed", "served"
PATHS = [
    ("/items", SERVED),
    ("/items?next=/admin/users", SERVED),
    ("/ADMIN/users", SERVED),  # case-sensitive routing: not the admin API
    ("/%69tems", SERVED),
    ("/%41dmin/users", SERVED),  # "/Admin/users"
    ("/admin/users", ADMIN),
    ("/%61dmin/users", ADMIN),
    ("//admin/users", ADMIN),
    ("/./admin/users", ADMIN),
    ("/x/../admin/users", ADMIN),
    ("/items/%2e%2e/admin/users", ADMIN),
    ("/items/%2E%2E/admin/users", ADMIN),
    ("/v1/charges%3F/../../admin", ADMIN),
    ("/admin%2Fusers", MALFORMED),
    ("/items%2F..%2Fadmin", MALFORMED),
    ("/items%00", MALFORMED),
    ("/admin%00/users", MALFORMED),
    ("/items\\..\\admin", MALFORMED),
    ("/items%5C..%5Cadmin", MALFORMED),
    ("/%zzadmin", MALFORMED),
    ("/admin%", MALFORMED),
    ("/%C0%AFadmin", MALFORMED),
    ("/%E0%80%AFadmin", MALFORMED),
]


@pytest.mark.parametrize(("target", "kind"), PATHS, ids=[f"{k}:{t}" for t, k in PATHS])
def test_path_spelling_is_decided_as_it_is_served(stack: Stack, target: str, kind: str) -> None:
    response, seen = stack.send(target)
    if seen is not None:
        # Whatever reached the upstream was allowed for the path it serves.
        (decision_id,) = seen.header("x-meshward-decision-id")
        entry = stack.decided(decision_id)
        assert entry["decision"] == "allow"
        assert _served(seen.path) == _served(entry["request"]["path"]), (seen.path, entry)
        assert not _served(seen.path).startswith("/admin")
    if kind == SERVED:
        assert response.status == 200, response.body
        assert seen is not None
    else:
        assert seen is None, seen
        assert 400 <= response.status < 500, response.body
