"""The one request mapping: wire facts -> AccessRequest (authz/engine/request.py)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from authz.authn.authenticator import Authenticated
from authz.authn.peer import Peer
from authz.engine.canonical import MalformedRequest
from authz.engine.model import ANONYMOUS, EntityUid
from authz.engine.request import (
    DEFAULT_PATHS,
    PathOptions,
    RequestFacts,
    build_request,
    document_context,
    split_target,
)
from meshward.spiffe import SpiffeId

ORDERS = "spiffe://meshward.local/ns/shop/sa/orders"


def _build(facts: RequestFacts, paths: PathOptions = DEFAULT_PATHS) -> dict[str, object]:
    return dict(build_request(facts, Authenticated(ANONYMOUS), paths).context["http"])


def test_http_context_is_canonical_and_keeps_the_raw_path() -> None:
    http = _build(
        RequestFacts(
            "t",
            "get",
            "//x/../%61dmin/users",
            host="Shop.Example:8443",
            query="a=%2F",
            headers={
                "x-tenant": "globex,acme",
                "authorization": "Bearer x",
                "x-meshward-roles": "admin",
            },
        )
    )
    assert http == {
        "method": "GET",
        "host": "shop.example",
        "path": "/admin/users",
        "raw_path": "//x/../%61dmin/users",
        "query": "a=%2F",
        "headers": {"x-tenant": "globex,acme"},
    }


def test_path_options_reach_the_canonical_path() -> None:
    facts = RequestFacts("t", "GET", "/Admin%2fX")
    with pytest.raises(MalformedRequest):
        _build(facts)
    both = PathOptions(allow_encoded_slash=True, case_insensitive=True)
    assert _build(facts, both)["path"] == "/admin%2Fx"


@pytest.mark.parametrize("method", ["", "G E T", "GET\r\n", "X" * 33])
def test_bad_methods_are_malformed(method: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        _build(RequestFacts("t", method, "/"))
    assert caught.value.code == "bad_method"


def test_resource_precedence_destination_service_host() -> None:
    anonymous = Authenticated(ANONYMOUS)
    facts = RequestFacts("t", "GET", "/", host="Evil:1", destination=ORDERS, service="pinned")
    assert build_request(facts, anonymous).resource == EntityUid("Service", ORDERS)
    facts = RequestFacts("t", "GET", "/", host="Evil:1", destination="nope", service="pinned")
    assert build_request(facts, anonymous).resource == EntityUid("Service", "pinned")
    facts = RequestFacts("t", "GET", "/", host="Shop:443")
    assert build_request(facts, anonymous).resource == EntityUid("Service", "shop")


def test_peer_token_and_grpc_parts() -> None:
    peer = Peer(SpiffeId.parse(ORDERS), None, "mtls")
    facts = RequestFacts(
        "t", "POST", "/pkg.Svc/Do", headers={"content-type": "application/grpc+proto"}
    )
    request = build_request(facts, Authenticated(ANONYMOUS, peer, {"sub": "a"}))
    assert request.context["peer"] == {"spiffe_id": ORDERS, "trust_domain": "meshward.local"}
    assert request.context["token"] == {"claims": {"sub": "a"}}
    assert request.context["grpc"] == {"service": "pkg.Svc", "method": "Do"}
    plain = build_request(RequestFacts("t", "POST", "/pkg.Svc/Do"), Authenticated(ANONYMOUS))
    assert "grpc" not in plain.context and "peer" not in plain.context


def test_split_target_splits_before_decoding() -> None:
    assert split_target("/v1/charges%3F/../../admin") == ("/v1/charges%3F/../../admin", "")
    assert split_target("/a?b=1?c") == ("/a", "b=1?c")
    assert split_target("/a", "q=1") == ("/a", "q=1")


def test_document_context_maps_http_like_the_wire() -> None:
    action = EntityUid("Action", "GET")
    context = document_context(
        {"http": {"path": "/x/../admin?q=1", "headers": {"X-Tenant": ["a", "b"]}}, "other": 1},
        action,
    )
    assert context["other"] == 1
    assert context["http"] == {
        "method": "GET",
        "host": "",
        "path": "/admin",
        "raw_path": "/x/../admin",
        "query": "q=1",
        "headers": {"x-tenant": "a,b"},
    }
    assert document_context({}, action) == {}
    with pytest.raises(MalformedRequest):
        document_context({"http": {"headers": {"authorization": ["a", "b"]}}}, action)
    bad: Mapping[str, object]
    for bad in ({"http": []}, {"http": {"path": 1}}, {"http": {"headers": {"a": 1}}}):
        with pytest.raises(ValueError, match=r"context\.http"):
            document_context(bad, action)
