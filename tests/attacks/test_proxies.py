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
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.attacks.cases import CONTROLS, ROWS, AttackRequest, Row
from tests.attacks.drivers import http_status, request_head
from tests.support.caddy import caddy_server
from tests.support.cli import REPO
from tests.support.haproxy import haproxy_server
from tests.support.net import free_port
from tests.support.nginx import nginx_server
from tests.support.pdp import PdpProcess, pdp_process
from tests.support.proxy import Target
from tests.support.tokens import SigningKey
from tests.support.traefik import traefik_server
from tests.support.upstream import Echoed, RawResponse, Upstream, echo_upstream, raw_request
from tests.support.wait import eventually

SHOP = "spiffe://meshward.local/ns/shop/sa"
FRONTEND = f"{SHOP}/frontend"
ORDERS = f"{SHOP}/orders"
HOST = "catalog.shop.test"
OPEN_HOST = "open.shop.test"  # a service the frontend may do anything to

POLICY = f"""
@id("frontend-reads-catalog")
permit (principal == Workload::"{FRONTEND}", action in Action::"read",
        resource == Service::"{HOST}");

@id("frontend-adds-items")
permit (principal == Workload::"{FRONTEND}", action == Action::"POST",
        resource == Service::"{HOST}")
when {{ context has http && context.http.path == "/items" }};

@id("catalog-admin-api")
forbid (principal, action, resource == Service::"{HOST}")
when {{ context has http && context.http.path like "/admin*" }};

@id("frontend-owns-open")
permit (principal == Workload::"{FRONTEND}", action, resource == Service::"{OPEN_HOST}");
"""

# Each returns a context manager that runs the proxy from deploy/ for a Target.
PROXIES: dict[str, Callable[[Path, Target], AbstractContextManager[Any]]] = {
    "caddy": caddy_server,
    "haproxy": haproxy_server,
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
        body: bytes = b"",
        timeout: float = 10.0,
    ) -> tuple[RawResponse, Echoed | None]:
        """Send one request through the proxy; what came back, and what reached the upstream."""
        marker = f"{self.name}-{next(self.ids)}"
        lines = [("host", host), ("x-test-id", marker)]
        if workload is not None:
            lines.append(("authorization", f"Bearer {self.token(workload)}"))
        if body:
            lines.append(("content-length", str(len(body))))
        response = raw_request(
            self.port, target, [*lines, *(headers or [])], method=method, body=body,
            timeout=timeout,
        )  # fmt: skip
        return response, self.upstream.find(marker)

    def decided(self, decision_id: str) -> dict[str, Any]:
        """The PDP's decision-log entry for ``decision_id``."""

        def entry() -> dict[str, Any] | None:
            if self.decision_log.exists():
                for line in self.decision_log.read_text().splitlines():
                    logged = json.loads(line)
                    if logged["decision_id"] == decision_id:
                        return dict(logged)
            return None

        return eventually(entry, 5, 0.05, f"decision {decision_id} in the decision log")


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
def token_key() -> SigningKey:
    """Signs well-formed JWT-SVIDs that no PDP has to accept (there is none)."""
    return SigningKey("no-pdp")


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


def test_the_body_goes_to_the_upstream_not_to_the_pdp(stack: Stack) -> None:
    body = bytes(range(256)) * 1024  # 256 KiB
    response, seen = stack.send("/items", method="POST", body=body)
    assert response.status == 200, response.body
    assert seen is not None
    assert seen.method == "POST"
    assert seen.body == body


def test_another_spelling_of_the_host_is_decided_as_the_pinned_host(stack: Stack) -> None:
    response, seen = stack.send("/items", host=f"{HOST.upper()}:{stack.port}")
    assert response.status == 200, response.body
    assert seen is not None
    (decision_id,) = seen.header("x-meshward-decision-id")
    assert stack.decided(decision_id)["resource"] == f'Service::"{HOST}"'
    (host,) = seen.header("host")
    assert host.lower().partition(":")[0] == HOST


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
    # nginx can only overwrite the names it knows; the others remove them all.
    ours = {"x-meshward-principal", "x-meshward-decision-id"}
    names = {k.lower() for k, _ in seen.headers if k.lower().startswith("x-meshward-")}
    assert names - ours == ({"x-meshward-roles"} if stack.name == "nginx" else set())


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


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_pdp_not_listening_fails_closed(
    name: str, upstream: Upstream, tmp_path: Path, token_key: SigningKey
) -> None:
    target = Target(f"127.0.0.1:{free_port()}", upstream.port, HOST)  # nothing listens there
    with PROXIES[name](tmp_path, target) as proxy:
        started = time.monotonic()
        claims = {"sub": FRONTEND, "aud": ["meshward", HOST], "exp": int(time.time()) + 300}
        response = raw_request(
            proxy.port,
            "/items",
            [
                ("host", HOST),
                ("x-test-id", f"{name}-no-pdp"),
                ("authorization", f"Bearer {token_key.sign(claims)}"),
            ],
        )
        elapsed = time.monotonic() - started
    assert response.status >= 500, response.body
    assert upstream.find(f"{name}-no-pdp") is None
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
    (f"http://{HOST}/admin/users", ADMIN),  # absolute-form request target
    (f"http://{HOST}/x/../admin/users", ADMIN),
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


def _table_paths() -> list[tuple[str, str]]:
    """The path rows of tests/attacks/cases.py, as kinds for this case-sensitive PDP."""
    mine = {target for target, _ in PATHS}
    rows = []
    for row in ROWS:
        target = row.request.target
        if row.request != AttackRequest(target=target) or not isinstance(target, str):
            continue  # not a path row, or bytes (sent by the table's own driver below)
        if target in mine:
            continue
        if row.same_as is None:
            rows.append((target, MALFORMED))
        else:
            rows.append((target, ADMIN if _served(target).startswith("/admin") else SERVED))
    return rows


PATHS += _table_paths()


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


# -- the standing attack table (tests/attacks/cases.py) through every proxy ---


class ProxyDriver:
    """A real proxy from deploy/ in front of the attack PDP, as a driver.

    The request goes to the proxy exactly as the client sends it; "allowed"
    is a 200 that reached the upstream. The proxy pins the destination: one
    proxy per destination a row names, started when first needed.
    """

    def __init__(self, name: str, pdp: str, upstream: Upstream, workdir: Path) -> None:
        self.name = name
        self.pdp = pdp
        self.upstream = upstream
        self.workdir = workdir
        self.ports: dict[str, int] = {}
        self.running = ExitStack()
        self.ids = itertools.count()

    def port(self, destination: str) -> int:
        if destination not in self.ports:
            target = Target(self.pdp, self.upstream.port, destination)
            start = PROXIES[self.name]
            proxy = self.running.enter_context(start(self.workdir / destination, target))
            self.ports[destination] = proxy.port
        return self.ports[destination]

    def allowed(self, request: AttackRequest) -> bool:
        marker = f"row-{self.name}-{next(self.ids)}"
        headers: list[tuple[str, str | bytes]] = list(request.headers)
        if not any(name.lower() == "host" for name, _ in headers):
            headers.insert(0, ("Host", request.host))
        headers.append(("x-test-id", marker))
        target = request.target if isinstance(request.target, bytes) else request.target.encode()
        head = request_head(request.method, target, headers)
        status, _ = http_status(self.port(request.destination), head)
        reached = self.upstream.find(marker) is not None
        assert reached == (status == 200), f"{status}, reached the upstream: {reached}"
        return reached


@pytest.fixture(scope="module", params=sorted(PROXIES))
def proxy_driver(
    request: pytest.FixtureRequest,
    attack_pdp: PdpProcess,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyDriver]:
    name: str = request.param
    workdir = tmp_path_factory.mktemp(f"rows-{name}")
    driver = ProxyDriver(name, f"127.0.0.1:{attack_pdp.http_port}", upstream, workdir)
    with driver.running:
        yield driver


_PROXY_ROWS = [row for row in ROWS if row.applies_to("proxy")]
# Headers a proxy owns: the configs remove the client's copies (Traefik only
# the ones it can name: the PDP refuses the rest when repeated), so a row
# carrying them is allowed only if the request without them is (and the
# upstream never sees them: tested above).
_OWNED = ("x-forwarded-client-cert", "x-meshward-")


def _without_owned(request: AttackRequest) -> AttackRequest:
    kept = tuple((k, v) for k, v in request.headers if not k.lower().startswith(_OWNED))
    return request.with_(headers=kept)


@pytest.mark.parametrize("row", _PROXY_ROWS, ids=[row.name for row in _PROXY_ROWS])
def test_row_decides_like_its_canonical_request(proxy_driver: ProxyDriver, row: Row) -> None:
    got = proxy_driver.allowed(row.request)
    if _without_owned(row.request) != row.request:
        assert not got or proxy_driver.allowed(_without_owned(row.request)), row.name
        return
    expected = False if row.same_as is None else proxy_driver.allowed(row.same_as)
    assert got == expected, f"{row.name}: {row.request} decided {got}, expected {expected}"


@pytest.mark.parametrize("control", CONTROLS, ids=[c[0] for c in CONTROLS])
def test_controls(proxy_driver: ProxyDriver, control: tuple[str, AttackRequest, bool]) -> None:
    name, request, allowed = control
    assert proxy_driver.allowed(request) is allowed, name
