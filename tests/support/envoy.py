"""Envoy ``ext_authz`` v3 messages built with Envoy's own protos (``xds-protos``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb

__all__ = ["check_request", "denied_body_json", "upstream_headers"]

SHOP = "spiffe://meshward.local/ns/shop/sa"


def check_request(
    method: str = "GET",
    path: str = "/",
    host: str = "catalog",
    headers: Mapping[str, str] | None = None,
    *,
    principal: str = "",
    certificate: str = "",
    destination: str = f"{SHOP}/catalog",
    address: str = "10.0.0.7",
    context_extensions: Mapping[str, str] | None = None,
    raw_headers: Mapping[str, bytes] | None = None,
) -> pb.CheckRequest:
    http = ac.AttributeContext.HttpRequest(
        method=method, path=path, host=host, headers=dict(headers or {}), protocol="HTTP/2"
    )
    for key, value in (raw_headers or {}).items():
        http.header_map.headers.add(key=key, raw_value=value)
    return pb.CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(
                principal=principal,
                certificate=certificate,
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=address, port_value=40000)
                ),
            ),
            destination=ac.AttributeContext.Peer(principal=destination),
            request=ac.AttributeContext.Request(http=http),
            context_extensions=dict(context_extensions or {}),
        )
    )


def upstream_headers(response: pb.CheckResponse) -> dict[str, str]:
    return {h.header.key: h.header.value for h in response.ok_response.headers}


def denied_body_json(response: pb.CheckResponse) -> dict[str, str]:
    body: dict[str, str] = json.loads(response.denied_response.body)
    return body
