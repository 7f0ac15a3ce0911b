"""``meshward pdp ask``: one Envoy ext_authz Check, as Envoy would send it.

:func:`check_request` builds the ``CheckRequest`` from flags (or takes one in
Envoy's JSON form, as ``grpcurl -d`` does); :func:`ask` sends it to a
running PDP over gRPC (Envoy's own protos from ``xds-protos``);
:func:`answer_json` turns the ``CheckResponse`` into what the command prints:
the decision, the gRPC status code, the HTTP status the proxy would return,
and the headers and body.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.protobuf import json_format
from google.rpc import code_pb2

from authz.errors import AskError

__all__ = [
    "AskError",
    "answer_json",
    "ask",
    "check_request",
    "check_request_json",
    "headers_of",
    "parse_header",
]


def check_request(
    *,
    method: str = "GET",
    path: str = "/",
    host: str = "",
    headers: Sequence[tuple[str, str]] = (),
    source_principal: str = "",
    source_certificate: str = "",
    destination_principal: str = "",
) -> pb.CheckRequest:
    """A CheckRequest for one HTTP request, with Envoy's mTLS principals if given.

    ``source_certificate`` is the caller's PEM chain; it travels URL-encoded, as
    Envoy's ``include_peer_certificate`` sends it.
    """
    request = pb.CheckRequest()
    attributes = request.attributes
    if source_principal:
        attributes.source.principal = source_principal
    if source_certificate:
        attributes.source.certificate = urllib.parse.quote(source_certificate, safe="")
    if destination_principal:
        attributes.destination.principal = destination_principal
    http = attributes.request.http
    http.method = method.upper()
    http.path = path
    http.host = host
    http.protocol = "HTTP/1.1"
    for name, value in headers:
        http.headers[name.lower()] = value
    return request


def check_request_json(text: str) -> pb.CheckRequest:
    """A CheckRequest from Envoy's JSON form (``{"attributes": {...}}``)."""
    try:
        return json_format.Parse(text, pb.CheckRequest())
    except json_format.ParseError as exc:
        raise AskError(f"not a CheckRequest: {exc}") from exc


def ask(addr: str, request: pb.CheckRequest, timeout: float = 10.0) -> pb.CheckResponse:
    """Send ``request`` to the PDP at ``addr`` (plaintext gRPC) and return its answer."""
    try:
        with grpc.insecure_channel(addr) as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            response: pb.CheckResponse = stub.Check(request, timeout=timeout)
            return response
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        name = code.name if code is not None else "UNKNOWN"
        raise AskError(f"no answer from {addr}: {name}") from exc


def _headers(options: Any) -> dict[str, str]:
    return {o.header.key: o.header.value for o in options}


def answer_json(response: pb.CheckResponse) -> dict[str, Any]:
    """What ``pdp ask`` prints for ``response``."""
    code = response.status.code
    out: dict[str, Any] = {
        "decision": "allow" if code == code_pb2.OK else "deny",
        "grpc_status": code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code),
    }
    if code == code_pb2.OK:
        out["http_status"] = 200
        out["headers"] = _headers(response.ok_response.headers)
        return out
    denied = response.denied_response
    out["http_status"] = int(denied.status.code) or 403
    out["headers"] = _headers(denied.headers)
    body: Any = denied.body
    with contextlib.suppress(ValueError):
        body = json.loads(denied.body) if denied.body else ""
    out["body"] = body
    return out


def parse_header(value: str) -> tuple[str, str]:
    """``Name: value`` (as curl's ``-H``) -> ``("name", "value")``."""
    name, sep, rest = value.partition(":")
    if not sep or not name.strip():
        raise AskError(f"expected a header as 'Name: value', got {value!r}")
    return name.strip().lower(), rest.strip()


def headers_of(values: Sequence[str], bearer: str | None) -> list[tuple[str, str]]:
    out = [parse_header(v) for v in values]
    if bearer:
        out.append(("authorization", f"Bearer {bearer}"))
    return out
