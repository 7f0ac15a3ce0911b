"""Ways into a decision, each a driver: ``allowed(request) -> bool`` for an AttackRequest.

Wire drivers put the attacker's bytes on the wire as a proxy would hand them
to the PDP, with nothing in between that could normalize them: a raw HTTP/1.1
socket for the forward-auth endpoints, Envoy's own protos (xds-protos) over
gRPC for ``Check``. Document drivers say the same request in the decision
document (``POST /v1/authorize``, ``meshward check``) or a policy test case.

A driver for a real proxy (Traefik, Caddy, nginx, HAProxy) implements the same
protocol; register it in the ``drivers`` fixture of its own test module.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import grpc
from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.rpc import code_pb2
from typer.testing import CliRunner

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.request import PathOptions
from authz.errors import RequestError
from authz.lifecycle.testsuite import case_request
from meshward.cli import app
from tests.attacks.cases import AttackRequest

__all__ = [
    "ApiDriver",
    "CheckDriver",
    "Driver",
    "ForwardAuthDriver",
    "GrpcDriver",
    "PolicyTestDriver",
    "http_status",
    "request_head",
]

_PLACEHOLDER = "/" + "P" * 62  # replaced by a raw (non-UTF-8) target


class Driver(Protocol):
    name: str

    def allowed(self, request: AttackRequest) -> bool: ...


def _target_bytes(target: str | bytes) -> bytes:
    return target if isinstance(target, bytes) else target.encode("utf-8")


def http_status(port: int, head: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one raw HTTP/1.1 request head; the response's status code and head."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    parts = data.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return 0, data  # the server closed the connection without an answer
    return int(parts[1]), data.split(b"\r\n\r\n", 1)[0]


def request_head(method: str, target: bytes, headers: list[tuple[str, str | bytes]]) -> bytes:
    """A raw HTTP/1.1 request head, ``Connection: close``; header values sent as given."""
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _has(headers: tuple[tuple[str, str], ...], name: str) -> bool:
    return any(k.lower() == name for k, _ in headers)


class ForwardAuthDriver:
    """``/ext_authz``, ``/auth/nginx`` or ``/auth/traefik`` over a raw socket.

    The client's headers are passed on verbatim, as forward-auth proxies do;
    the proxy's own headers carry the original request line and the pinned
    destination.
    """

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port

    def _request(self, r: AttackRequest) -> tuple[str, bytes, list[tuple[str, str | bytes]]]:
        headers: list[tuple[str, str | bytes]] = list(r.headers)
        if not _has(r.headers, "host"):
            headers.insert(0, ("Host", r.host))
        target = _target_bytes(r.target)
        if self.name == "ext_authz":
            # Envoy http_service: the original method and target under the
            # prefix; the sidecar adds the fixed destination.
            headers.append(("x-meshward-destination", r.destination))
            return r.method, b"/ext_authz" + target, headers
        if self.name == "nginx":
            headers += [
                ("X-Original-Method", r.method),
                ("X-Original-URI", target),
                ("X-Original-Host", r.destination),
            ]
        else:
            headers += [
                ("X-Forwarded-Method", r.method),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Uri", target),
                ("X-Forwarded-Host", r.destination),
            ]
        return "GET", f"/auth/{self.name}".encode(), headers

    def allowed(self, request: AttackRequest) -> bool:
        method, target, headers = self._request(request)
        status, head = http_status(self.port, request_head(method, target, headers))
        if status == 400:
            return False  # the HTTP server refused it before the PDP (repeated Host, bad bytes)
        # Otherwise the PDP decided (an answer with a decision id), not a router.
        if status not in (200, 401, 403) or b"\r\nx-meshward-decision-id: " not in head.lower():
            raise AssertionError(f"{self.name}: no decision for {request}: {head!r}")
        return status == 200


class GrpcDriver:
    """Envoy's ``Authorization/Check`` with a real gRPC client.

    Headers go in ``header_map`` one entry per field, as Envoy sends them
    with ``encode_raw_headers``; the destination is pinned in
    ``context_extensions``; the immediate peer is a loopback address.
    """

    name = "grpc"

    def __init__(self, channel: grpc.Channel) -> None:
        self.check: Callable[..., bytes] = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=lambda data: data,
            response_deserializer=lambda data: data,
        )

    def _message(self, r: AttackRequest) -> bytes:
        raw_target = isinstance(r.target, bytes)
        http = ac.AttributeContext.HttpRequest(
            method=r.method,
            path=_PLACEHOLDER if raw_target else str(r.target),
            host=r.host,
            protocol="HTTP/1.1",
        )
        for name, value in r.headers:
            http.header_map.headers.add(key=name.lower(), raw_value=value.encode("latin-1"))
        message: bytes = pb.CheckRequest(
            attributes=ac.AttributeContext(
                source=ac.AttributeContext.Peer(
                    address=address_pb2.Address(
                        socket_address=address_pb2.SocketAddress(
                            address="127.0.0.1", port_value=40000
                        )
                    )
                ),
                request=ac.AttributeContext.Request(http=http),
                context_extensions={"service": r.destination},
            )
        ).SerializeToString()
        if raw_target:
            # Bytes Envoy might pass that are not UTF-8: spliced into the
            # encoded message (same length, so the framing stays valid).
            target = _target_bytes(r.target)
            placeholder = _PLACEHOLDER.encode()
            padded = target + b"/" * (len(placeholder) - len(target))
            if len(padded) != len(placeholder):
                raise ValueError("raw target longer than the placeholder")
            message = message.replace(placeholder, padded)
        return message

    def allowed(self, request: AttackRequest) -> bool:
        response = pb.CheckResponse.FromString(self.check(self._message(request), timeout=10))
        decided = (code_pb2.OK, code_pb2.PERMISSION_DENIED, code_pb2.UNAUTHENTICATED)
        if response.status.code not in decided:
            raise AssertionError(f"grpc: no decision for {request}: {response}")
        allowed: bool = response.status.code == code_pb2.OK
        return allowed


def _document(r: AttackRequest) -> dict[str, object]:
    headers: dict[str, list[str]] = {}
    for name, value in r.headers:
        headers.setdefault(name, []).append(value)
    return {
        "principal": 'Anonymous::"anonymous"',
        "action": f'Action::"{r.method}"',
        "resource": {"type": "Service", "id": r.destination},
        "context": {
            "http": {"method": r.method, "host": r.host, "path": r.target, "headers": headers}
        },
    }


class ApiDriver:
    """``POST /v1/authorize`` with the ``check`` document."""

    name = "api"

    def __init__(self, port: int) -> None:
        self.port = port

    def allowed(self, request: AttackRequest) -> bool:
        body = json.dumps(_document(request)).encode()
        head = request_head(
            "POST",
            b"/v1/authorize",
            [
                ("Host", "pdp"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ],
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(head + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1])
        if status != 200:
            raise AssertionError(f"/v1/authorize answered {status}: {data[-300:]!r}")
        decision = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return bool(decision["decision"] == "allow")


class CheckDriver:
    """``meshward check`` (the real command, run in-process for speed)."""

    name = "check"

    def __init__(self, config: Path, policies: Path) -> None:
        self.argv = ["--config", str(config), "check", "--policies", str(policies)]
        self.runner = CliRunner()

    def allowed(self, request: AttackRequest) -> bool:
        result = self.runner.invoke(app, self.argv, input=json.dumps(_document(request)))
        if result.exit_code not in (0, 1):
            raise AssertionError(f"check exited {result.exit_code}: {result.output}")
        allowed = json.loads(result.stdout.strip().splitlines()[-1])["decision"] == "allow"
        if allowed != (result.exit_code == 0):
            raise AssertionError(f"exit {result.exit_code} disagrees with {result.stdout}")
        return bool(allowed)


class PolicyTestDriver:
    """A policy test case with a raw ``request``, evaluated by the bundle's engine.

    A request the PDP would deny as malformed is a load error of the case:
    the driver reports it as a deny.
    """

    name = "policytest"

    def __init__(self, policies: Path, paths: PathOptions) -> None:
        self.engine = Engine(load_bundle(policies))
        self.paths = paths

    def allowed(self, request: AttackRequest) -> bool:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers.setdefault(name, []).append(value)
        case = {
            "name": "row",
            "request": {
                "method": request.method,
                "service": request.destination,
                "host": request.host,
                "path": request.target,
                "headers": headers,
            },
            "expect": "allow",
        }
        try:
            mapped = case_request(case, self.paths)
        except RequestError as exc:
            if "malformed" in str(exc):
                return False  # a load error of the case: the PDP denies it
            raise
        return self.engine.evaluate(mapped).allowed
