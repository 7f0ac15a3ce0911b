"""Trust attacks: credentials and identities the PDP must not believe, through every adapter.

Each row is an attack and its honest twin (the control): the attack must be
refused and the control allowed on the same adapter, so a row cannot pass
because everything is denied. Rows run against one real ``meshward pdp
serve`` (gRPC ``Check`` with Envoy's protos, and ``/ext_authz``,
``/auth/nginx``, ``/auth/traefik`` over a raw socket from loopback, which is
not a trusted proxy). The policy-source rows (a symlink in the policy
directory, a Git commit that expands hugely) run their own PDP.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.rpc import code_pb2

from tests.support.certs import TestPki, url_encoded_pem
from tests.support.cli import REPO
from tests.support.gitrepo import PolicyRepo, git
from tests.support.pdp import ISSUER, TRUST_DOMAIN, PdpProcess, pdp_process
from tests.support.tokens import SigningKey
from tests.support.wait import eventually

SHOP = "spiffe://meshward.local/ns/shop/sa"
ORDERS = f"{SHOP}/orders"
FRONTEND = f"{SHOP}/frontend"
PAYMENTS = "payments"  # the destination the proxy pins (a service name on every adapter)
CATALOG = "catalog"
PARTNER = "https://partner.example"  # a second, equally trusted, token issuer
TRUSTED_PROXY = "10.1.2.3"  # inside pdp.trusted_proxies; the test's sockets are loopback

POLICIES = f"""
@id("orders-runs-payments")
permit (principal == Workload::"{ORDERS}", action, resource == Service::"{PAYMENTS}");

@id("frontend-reads-catalog")
permit (principal == Workload::"{FRONTEND}", action in Action::"read",
        resource == Service::"{CATALOG}");

@id("admins-run-payments")
permit (principal in Group::"{ISSUER}|admins", action, resource == Service::"{PAYMENTS}");

@id("no `big` amounts`")
forbid (principal, action, resource)
when {{ context has token && context.token.claims has n && context.token.claims.n * 4 > 100 }};
"""

PDP_SETTINGS: dict[str, object] = {
    "trusted_proxies": ["10.0.0.0/8"],
    "trust_peer_principal": True,
}
ADAPTERS = ("grpc", "ext_authz", "nginx", "traefik")
HTTP_ADAPTERS = frozenset(ADAPTERS) - {"grpc"}


@dataclass(frozen=True)
class Probe:
    """One request as a proxy hands it to the PDP."""

    method: str = "POST"
    path: str = "/v1/charges"
    destination: str = PAYMENTS
    headers: tuple[tuple[str, str], ...] = ()
    principal: str = ""  # gRPC: Envoy's source.principal
    certificate: str = ""  # gRPC: Envoy's source.certificate (URL-encoded PEM)
    address: str = "127.0.0.1"  # gRPC: Envoy's source.address

    def with_headers(self, *headers: tuple[str, str]) -> Probe:
        return replace(self, headers=self.headers + headers)


@dataclass
class Keys:
    """The credentials a row may use, from the running PDP's trust configuration."""

    pdp: PdpProcess
    partner: SigningKey

    def svid(self, sub: str, aud: object, **claims: object) -> tuple[str, str]:
        token = self.pdp.svid_key.sign(
            {"sub": sub, "aud": aud, "exp": int(time.time()) + 300, **claims}
        )
        return ("Authorization", f"Bearer {token}")

    def user(self, key: SigningKey, issuer: str, groups: list[str]) -> tuple[str, str]:
        claims = {
            "iss": issuer,
            "sub": "ada",
            "aud": "shop",
            "exp": int(time.time()) + 300,
            "groups": groups,
        }
        return ("Authorization", f"Bearer {key.sign(claims)}")

    def xfcc_cert(self, spiffe_id: str) -> str:
        return f'Cert="{self.pdp.peer_certificate(spiffe_id)}"'


@dataclass(frozen=True)
class TrustRow:
    name: str
    attack: Callable[[Keys], Probe]
    control: Callable[[Keys], Probe]
    adapters: frozenset[str] = frozenset(ADAPTERS)
    note: str = ""


def _foreign_chain(spiffe_id: str) -> str:
    """A valid-looking chain for ``spiffe_id`` from a CA of the same trust domain name
    that the PDP does not trust."""
    pki = TestPki(TRUST_DOMAIN)
    now = dt.datetime.now(dt.UTC)
    leaf = pki.leaf(
        spiffe_id,
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(hours=1),
    )
    return url_encoded_pem(*pki.chain(leaf))


def _expired_chain(keys: Keys, spiffe_id: str) -> str:
    """A chain for ``spiffe_id`` from the PDP's trusted CA that expired a minute ago."""
    pki = keys.pdp.pki
    now = dt.datetime.now(dt.UTC)
    leaf = pki.leaf(
        spiffe_id,
        not_before=now - dt.timedelta(hours=1),
        not_after=now - dt.timedelta(minutes=1),
    )
    return url_encoded_pem(*pki.chain(leaf))


_SPOOFED_PEER = (
    ("X-Forwarded-For", TRUSTED_PROXY),
    ("Forwarded", f"for={TRUSTED_PROXY}"),
    ("X-Real-IP", TRUSTED_PROXY),
)

ROWS: tuple[TrustRow, ...] = (
    TrustRow(
        "JWT-SVID replayed to another destination",
        # The catalog received the orders service's token and presents it to payments.
        lambda k: Probe().with_headers(k.svid(ORDERS, CATALOG)),
        lambda k: Probe().with_headers(k.svid(ORDERS, PAYMENTS)),
    ),
    TrustRow(
        "JWT-SVID for a mesh-wide audience",
        lambda k: Probe().with_headers(k.svid(ORDERS, "meshward")),
        lambda k: Probe().with_headers(k.svid(ORDERS, ["meshward", PAYMENTS])),
    ),
    TrustRow(
        "bare principal without its certificate",
        lambda k: Probe(principal=ORDERS),
        lambda k: Probe(principal=ORDERS, certificate=k.pdp.peer_certificate(ORDERS)),
        adapters=frozenset({"grpc"}),
        note="only Envoy's gRPC attributes carry a principal",
    ),
    # Each control runs first, so the PDP has just remembered ORDERS as an
    # authenticated peer (authz.authn.peermemo): the attack must still be verified.
    TrustRow(
        "a remembered peer's principal with a chain from another CA",
        lambda k: Probe(principal=ORDERS, certificate=_foreign_chain(ORDERS)),
        lambda k: Probe(principal=ORDERS, certificate=k.pdp.peer_certificate(ORDERS)),
        adapters=frozenset({"grpc"}),
    ),
    TrustRow(
        "a remembered peer's principal with an expired certificate",
        lambda k: Probe(principal=ORDERS, certificate=_expired_chain(k, ORDERS)),
        lambda k: Probe(principal=ORDERS, certificate=k.pdp.peer_certificate(ORDERS)),
        adapters=frozenset({"grpc"}),
    ),
    TrustRow(
        "forged XFCC from an untrusted peer",
        lambda k: Probe().with_headers(("X-Forwarded-Client-Cert", f"URI={ORDERS}")),
        lambda k: Probe().with_headers(k.svid(ORDERS, PAYMENTS)),
    ),
    TrustRow(
        "forged XFCC with a valid certificate from an untrusted peer",
        lambda k: Probe().with_headers(("X-Forwarded-Client-Cert", k.xfcc_cert(ORDERS))),
        # The same header from a trusted proxy is believed (gRPC reports the peer).
        lambda k: Probe(address=TRUSTED_PROXY).with_headers(
            ("X-Forwarded-Client-Cert", k.xfcc_cert(ORDERS))
        ),
        adapters=frozenset({"grpc"}),
    ),
    TrustRow(
        "forged XFCC behind a spoofed X-Forwarded-For",
        lambda k: Probe().with_headers(
            *_SPOOFED_PEER, ("X-Forwarded-Client-Cert", k.xfcc_cert(ORDERS))
        ),
        lambda k: Probe().with_headers(*_SPOOFED_PEER, k.svid(ORDERS, PAYMENTS)),
    ),
    TrustRow(
        "another issuer's admins group",
        lambda k: Probe().with_headers(k.user(k.partner, PARTNER, ["admins"])),
        lambda k: Probe().with_headers(k.user(k.pdp.idp_key, ISSUER, ["admins"])),
    ),
    TrustRow(
        "an erring forbid whose @id holds backticks",
        # n * 4 overflows: the forbid errs, so it might have applied.
        lambda k: Probe().with_headers(k.svid(ORDERS, PAYMENTS, n=2**62)),
        lambda k: Probe().with_headers(k.svid(ORDERS, PAYMENTS, n=1)),
    ),
)


# -- drivers ---------------------------------------------------------------------------------


def _http_status(port: int, head: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else 0


def _forward_auth(adapter: str, port: int, probe: Probe) -> bool:
    headers = [("Host", probe.destination), *probe.headers]
    if adapter == "ext_authz":
        method, target = probe.method, "/ext_authz" + probe.path
        headers.append(("x-meshward-destination", probe.destination))
    elif adapter == "nginx":
        method, target = "GET", "/auth/nginx"
        headers += [
            ("X-Original-Method", probe.method),
            ("X-Original-URI", probe.path),
            ("X-Original-Host", probe.destination),
        ]
    else:
        method, target = "GET", "/auth/traefik"
        headers += [
            ("X-Forwarded-Method", probe.method),
            ("X-Forwarded-Uri", probe.path),
            ("X-Forwarded-Host", probe.destination),
        ]
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    head = ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode("latin-1")
    return _http_status(port, head) == 200


def _grpc(check: Callable[..., pb.CheckResponse], probe: Probe) -> bool:
    http = ac.AttributeContext.HttpRequest(
        method=probe.method, path=probe.path, host=probe.destination, protocol="HTTP/1.1"
    )
    for name, value in probe.headers:
        http.header_map.headers.add(key=name.lower(), raw_value=value.encode("latin-1"))
    request = pb.CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(
                principal=probe.principal,
                certificate=probe.certificate,
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(
                        address=probe.address, port_value=40000
                    )
                ),
            ),
            request=ac.AttributeContext.Request(http=http),
            context_extensions={"service": probe.destination},
        )
    )
    return bool(check(request, timeout=10).status.code == code_pb2.OK)


@dataclass
class TrustPdp:
    keys: Keys
    check: Callable[..., pb.CheckResponse] = field(repr=False)

    def allowed(self, adapter: str, probe: Probe) -> bool:
        if adapter == "grpc":
            return _grpc(self.check, probe)
        return _forward_auth(adapter, self.keys.pdp.http_port, probe)


def _attack_policies(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    schema = (REPO / "policies" / "schema.cedarschema").read_text()
    # A numeric claim, so a forbid can err at run time (overflow) and still validate.
    schema = schema.replace("  scope?: String,\n", "  scope?: String,\n  n?: Long,\n")
    if "n?: Long" not in schema:
        raise AssertionError("the example schema's Claims type moved: update this fixture")
    (root / "schema.cedarschema").write_text(schema)
    (root / "trust.cedar").write_text(POLICIES)
    return root


def _issuers_env(workdir: Path, partner: SigningKey) -> dict[str, str]:
    """Both token issuers (ours and a partner), as MESHWARD_PDP__OIDC_ISSUERS."""
    partner_jwks = workdir / "partner-jwks.json"
    partner_jwks.write_text(json.dumps({"keys": [partner.jwk]}))
    issuers = [
        {
            "issuer": issuer,
            "audiences": ["shop"],
            "jwks_file": str(path),
            "algorithms": ["RS256"],
        }
        for issuer, path in ((ISSUER, workdir / "idp-jwks.json"), (PARTNER, partner_jwks))
    ]
    return {"MESHWARD_PDP__OIDC_ISSUERS": json.dumps(issuers)}


@pytest.fixture(scope="module")
def trust_pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrustPdp]:
    root = tmp_path_factory.mktemp("trust-attacks")
    workdir = root / "pdp"
    workdir.mkdir()
    partner = SigningKey("partner-1", "rsa")
    with (
        pdp_process(
            workdir,
            policies=_attack_policies(root / "policies"),
            pdp_settings=PDP_SETTINGS,
            env={
                **_issuers_env(workdir, partner),
                "MESHWARD_DECISION_LOG__PATH": str(workdir / "decisions.jsonl"),
            },
        ) as pdp,
        grpc.insecure_channel(pdp.grpc_addr) as channel,
    ):
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=pb.CheckRequest.SerializeToString,
            response_deserializer=pb.CheckResponse.FromString,
        )
        yield TrustPdp(Keys(pdp, partner), check)


_PAIRS = [(a, row) for row in ROWS for a in ADAPTERS if a in row.adapters]


@pytest.mark.parametrize(("adapter", "row"), _PAIRS, ids=[f"{a}-{r.name}" for a, r in _PAIRS])
def test_trust_attack_is_refused_and_its_control_allowed(
    trust_pdp: TrustPdp, adapter: str, row: TrustRow
) -> None:
    assert trust_pdp.allowed(adapter, row.control(trust_pdp.keys)), f"control of {row.name}"
    assert not trust_pdp.allowed(adapter, row.attack(trust_pdp.keys)), row.name


@pytest.mark.parametrize("adapter", sorted(HTTP_ADAPTERS))
def test_allowed_answers_tell_the_proxy_to_strip_the_credential(
    trust_pdp: TrustPdp, adapter: str
) -> None:
    probe = Probe().with_headers(trust_pdp.keys.svid(ORDERS, PAYMENTS))
    pdp = trust_pdp.keys.pdp
    if adapter == "ext_authz":
        response = httpx.post(
            f"{pdp.http_url}/ext_authz/v1/charges",
            headers={**dict(probe.headers), "x-meshward-destination": PAYMENTS},
        )
        assert response.headers["x-envoy-auth-headers-to-remove"] == "authorization"
    else:
        original = (
            {"X-Original-Method": "POST", "X-Original-URI": "/v1/charges"}
            if adapter == "nginx"
            else {"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v1/charges"}
        )
        host = {"X-Original-Host" if adapter == "nginx" else "X-Forwarded-Host": PAYMENTS}
        response = httpx.get(
            f"{pdp.http_url}/auth/{adapter}", headers={**dict(probe.headers), **original, **host}
        )
    assert response.status_code == 200
    assert response.headers["x-meshward-remove-headers"] == "authorization"


def test_grpc_allow_removes_the_credential(trust_pdp: TrustPdp) -> None:
    probe = Probe().with_headers(trust_pdp.keys.svid(ORDERS, PAYMENTS))
    request = pb.CheckRequest(
        attributes=ac.AttributeContext(
            request=ac.AttributeContext.Request(
                http=ac.AttributeContext.HttpRequest(
                    method="POST", path="/v1/charges", headers=dict(probe.headers)
                )
            ),
            context_extensions={"service": PAYMENTS},
        )
    )
    response = trust_pdp.check(request, timeout=10)
    assert response.status.code == code_pb2.OK
    assert list(response.ok_response.headers_to_remove) == ["authorization"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_decision_log_keeps_no_secret_from_the_request(
    trust_pdp: TrustPdp, adapter: str
) -> None:
    marker = f"m4rker-{adapter}"
    probe = replace(
        Probe(), path=f"/v1/charges?access_token=tok-{marker}&page=p-{marker}"
    ).with_headers(
        trust_pdp.keys.svid(ORDERS, PAYMENTS),
        ("X-Api-Key", f"key-{marker}"),
        ("X-Request-Id", f"rid-{marker}"),
    )
    assert trust_pdp.allowed(adapter, probe)
    log = trust_pdp.keys.pdp.workdir / "decisions.jsonl"

    def logged() -> list[dict[str, object]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line) for line in lines if f"rid-{marker}" in line]

    _wait(lambda: bool(logged()), "the decision logged")
    text = json.dumps(logged())
    # Only allow-listed header values are kept; query parameters keep their names.
    assert f"rid-{marker}" in text
    assert "access_token=[redacted]" in text
    for secret in (f"tok-{marker}", f"p-{marker}", f"key-{marker}", "Bearer"):
        assert secret not in text, secret


# -- policy sources --------------------------------------------------------------------------

SECRET = "s3cr3t_0utside_the_bundle"


def _wait(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    detail: Callable[[], str] = lambda: "",
) -> None:
    eventually(predicate, timeout, 0.2, what, detail)


def _rejected(pdp: PdpProcess) -> dict[str, Any] | None:
    last = httpx.get(f"{pdp.http_url}/v1/policies").json()["last_rejected"]
    return last if isinstance(last, dict) else None


def _codes(pdp: PdpProcess) -> set[str]:
    rejected = _rejected(pdp) or {}
    errors = rejected.get("errors") or []
    return {str(e["code"]) for e in errors if isinstance(e, dict)}


def _reloads(pdp: PdpProcess) -> dict[str, int]:
    reloads = httpx.get(f"{pdp.http_url}/v1/policies").json()["reloads"]
    return {str(k): int(v) for k, v in reloads.items()}


def _authorize_orders(pdp: PdpProcess) -> str:
    body = {
        "principal": f'Workload::"{ORDERS}"',
        "action": 'Action::"POST"',
        "resource": f'Service::"{PAYMENTS}"',
    }
    return str(httpx.post(f"{pdp.http_url}/v1/authorize", json=body).json()["decision"])


def test_symlinks_in_the_policy_directory_are_refused_unread(tmp_path: Path) -> None:
    policies = _attack_policies(tmp_path / "policies")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.cedar").write_text(f"// {SECRET}\nnot cedar at all {SECRET}\n")
    with pdp_process(
        tmp_path / "pdp",
        policies=policies,
        pdp_settings=PDP_SETTINGS,
        env={"MESHWARD_POLICY_SOURCE__POLL_INTERVAL": "0.2"},
    ) as pdp:
        active = httpx.get(f"{pdp.http_url}/v1/policies").json()["active_version"]
        for link, target in (
            (policies / "leak.cedar", outside / "secret.cedar"),  # a file
            (policies / "linked", outside),  # a directory
        ):
            os.symlink(target, link)

            def refused(name: str = link.name) -> bool:
                rejected = _rejected(pdp) or {}
                errors = rejected.get("errors") or []
                return any(isinstance(e, dict) and e.get("file") == name for e in errors)

            _wait(refused, f"the version with {link.name} rejected")
            assert _codes(pdp) == {"symlink"}
            body = httpx.get(f"{pdp.http_url}/v1/policies").text
            assert SECRET not in body
            assert httpx.get(f"{pdp.http_url}/v1/policies").json()["active_version"] == active
            assert _authorize_orders(pdp) == "allow"  # the last good version serves
            link.unlink()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_a_small_git_push_that_expands_hugely_is_rejected_in_flat_memory(
    tmp_path: Path,
) -> None:
    repo = PolicyRepo(tmp_path / "repo")
    files = _attack_policies(tmp_path / "bundle")
    repo.commit({p.name: p.read_text() for p in files.iterdir()})
    env = {
        "MESHWARD_POLICY_SOURCE__MAX_ARCHIVE_BYTES": str(8 * 1024 * 1024),
        "MESHWARD_POLICY_SOURCE__POLL_INTERVAL": "3600",
    }
    with pdp_process(
        tmp_path / "pdp", policies=repo.url, pdp_settings=PDP_SETTINGS, env=env
    ) as pdp:
        assert pdp.process is not None
        # 64 MiB of zeros: a push of a few dozen KiB.
        blob = subprocess.run(
            ["sh", "-c", "head -c 67108864 /dev/zero | git hash-object -w --stdin"],
            cwd=repo.work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},huge.cedar", cwd=repo.work)
        git("commit", "--quiet", "-m", "a small push", cwd=repo.work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=repo.work)
        pid = pdp.process.pid
        before = _status_kib(pid, "VmRSS")
        peak = [before]
        done = threading.Event()

        def sample() -> None:  # the PDP's resident memory, every 5 ms, until rejected
            while not done.is_set():
                peak[0] = max(peak[0], _status_kib(pid, "VmRSS"))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            assert httpx.post(f"{pdp.http_url}/v1/policies/refresh").status_code == 202
            _wait(
                lambda: bool({"archive_too_large", "archive_file_too_large"} & _codes(pdp)),
                "the huge version rejected",
                detail=lambda: httpx.get(f"{pdp.http_url}/v1/policies").text,
            )
        finally:
            done.set()
            sampler.join()
        grown_mib = (peak[0] - before) / 1024
        # Held whole (as before), the archive alone would have taken 64 MiB, twice.
        assert grown_mib < 24, f"the PDP's memory grew by {grown_mib:.0f} MiB"
        assert _authorize_orders(pdp) == "allow"  # the last good version serves
        # Remembered as rejected: another look does not unpack it again.
        reloads = httpx.get(f"{pdp.http_url}/v1/policies").json()["reloads"]
        assert httpx.post(f"{pdp.http_url}/v1/policies/refresh").status_code == 202
        _wait(
            lambda: _reloads(pdp)["unchanged"] > reloads["unchanged"],
            "the next look at the source",
        )
        assert _reloads(pdp)["rejected"] == reloads["rejected"]
