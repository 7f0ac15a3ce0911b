"""CheckRequest <-> model mapping, and the servicer under generated requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.rpc import code_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.adapters.envoy_grpc import CheckServicer, check_response, facts_from_check
from authz.authn.authenticator import Authenticator
from authz.authn.jwt import JwtPolicy, JwtVerifier
from authz.authn.peer import PeerPolicy
from authz.authn.trust import TrustBundles, TrustDomainBundle
from authz.engine.bundle import load_bundle
from authz.engine.canonical import MalformedRequest
from authz.engine.decider import Decider, DecisionRecord, EngineHolder, Outcome, Verdict
from authz.engine.evaluation import Engine
from authz.engine.model import Decision, EntityUid
from meshward.clock import FixedClock
from meshward.spiffe import TrustDomain
from tests.support.certs import T0, TestPki, url_encoded_pem
from tests.support.cli import REPO
from tests.support.envoy import SHOP, check_request

PKI = TestPki("meshward.local")
ENGINE = Engine(load_bundle(REPO / "policies"))
FRONTEND = f"{SHOP}/frontend"


def test_facts_from_check() -> None:
    request = check_request(
        "post",
        "/api/orders?x=1&y=2",
        "orders.shop:8080",
        {"Content-Type": "application/json", ":authority": "ignored"},
        principal=FRONTEND,
        certificate="abc",
        context_extensions={"service": "orders"},
        raw_headers={"x-raw": b"caf\xc3\xa9"},
    )
    facts = facts_from_check(request)
    assert (facts.method, facts.path, facts.query, facts.host) == (
        "post",
        "/api/orders",
        "x=1&y=2",
        "orders.shop:8080",
    )
    assert facts.headers == {"content-type": "application/json", "x-raw": "café"}
    assert facts.peer.principal == FRONTEND
    assert facts.peer.certificate == "abc"
    assert facts.peer.address == "10.0.0.7"
    assert facts.destination == f"{SHOP}/catalog"
    assert facts.service == "orders"


def test_pseudo_headers_fill_missing_fields() -> None:
    request = check_request(
        "", "", "", {":method": "PUT", ":path": "/p?q", ":authority": "h"}, destination=""
    )
    facts = facts_from_check(request)
    assert (facts.method, facts.path, facts.query, facts.host) == ("PUT", "/p", "q", "h")


def _with_header_map(*fields: tuple[str, bytes]) -> pb.CheckRequest:
    request = check_request("GET", "/", "shop", {"X-Upper": "kept"})
    for key, value in fields:
        request.attributes.request.http.header_map.headers.add(key=key, raw_value=value)
    return request


def test_header_map_fields_are_joined_and_names_lower_cased() -> None:
    facts = facts_from_check(_with_header_map(("x-tenant", b"globex"), ("X-Tenant", b"acme")))
    assert facts.headers == {"x-upper": "kept", "x-tenant": "globex,acme"}
    plain = facts_from_check(check_request("GET", "/", "shop", {"X-Upper": "kept"}))
    assert plain.headers == {"x-upper": "kept"}


@pytest.mark.parametrize(
    "name", ["authorization", "x-forwarded-client-cert", "x-meshward-principal", "host"]
)
def test_repeated_single_headers_are_refused(name: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        facts_from_check(_with_header_map((name, b"a"), (name, b"b")))
    assert caught.value.code == "repeated_header"


def test_response_mapping() -> None:
    allow = Verdict(
        Outcome.ALLOW, Decision.deny(), "id1", EntityUid("Workload", FRONTEND), ("authorization",)
    )
    response = check_response(allow)
    assert response.status.code == code_pb2.OK
    assert [(h.header.key, h.header.value) for h in response.ok_response.headers] == [
        ("x-meshward-principal", f'Workload::"{FRONTEND}"'),
        ("x-meshward-decision-id", "id1"),
    ]
    assert list(response.ok_response.headers_to_remove) == ["authorization"]
    for outcome, code, status, error in [
        (Outcome.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED, 401, "unauthenticated"),
        (Outcome.DENY, code_pb2.PERMISSION_DENIED, 403, "forbidden"),
        (Outcome.ERROR, code_pb2.PERMISSION_DENIED, 403, "denied"),
        (Outcome.UNAVAILABLE, code_pb2.UNAVAILABLE, 503, "unavailable"),
    ]:
        response = check_response(Verdict(outcome, Decision.deny("x"), "id2"))
        assert response.status.code == code
        assert response.denied_response.status.code == status
        assert json.loads(response.denied_response.body) == {"error": error, "decision_id": "id2"}
        keys = {h.header.key for h in response.denied_response.headers}
        assert ("www-authenticate" in keys) == (status == 401)
        assert ("retry-after" in keys) == (status == 503)


# -- generated requests: never an exception, always well-formed, deny when in doubt --

_NOW = T0 + dt.timedelta(minutes=10)
_LEAVES = [
    url_encoded_pem(*PKI.chain(PKI.leaf(path="/ns/shop/sa/frontend"))),
    url_encoded_pem(PKI.leaf(path="/ns/shop/sa/frontend").cert),  # no intermediate
    url_encoded_pem(*TestPki("meshward.local").chain(TestPki("meshward.local").leaf())),
    "-----BEGIN CERTIFICATE-----%0Agarbage",
    "",
]
text = st.text(max_size=40)
header_names = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=20
)


class Recorder:
    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def observe(self, record: DecisionRecord) -> None:
        self.records.append(record)


def _servicer() -> tuple[CheckServicer, Recorder]:
    clock = FixedClock(_NOW)
    bundles = TrustBundles.of(TrustDomainBundle(TrustDomain("meshward.local"), (PKI.root.cert,)))
    authn = Authenticator(
        clock,
        PeerPolicy.build(True, ["127.0.0.1/32"]),
        bundles,
        JwtVerifier(JwtPolicy(), bundles),
    )
    recorder = Recorder()
    decider = Decider(EngineHolder(ENGINE, ENGINE.version), authn, clock, observers=[recorder])
    return CheckServicer(decider), recorder


requests = st.builds(
    check_request,
    method=st.sampled_from(["GET", "POST", "DELETE", "", "BREW", "get", "G T"]) | text,
    path=st.sampled_from(["/", "/healthz", "/api/orders", "/admin/x"]) | text,
    host=st.sampled_from(["catalog", "shop", ""]) | text,
    headers=st.dictionaries(header_names, text, max_size=5),
    principal=st.sampled_from([FRONTEND, f"{SHOP}/orders", "", "spiffe://evil/x"]) | text,
    certificate=st.sampled_from(_LEAVES),
    destination=st.sampled_from([f"{SHOP}/catalog", f"{SHOP}/payments", ""]) | text,
    address=st.sampled_from(["127.0.0.1", "10.0.0.1", "", "::1", "nonsense"]),
    raw_headers=st.dictionaries(header_names, st.binary(max_size=20), max_size=3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests)
def test_generated_requests_never_crash(request: pb.CheckRequest) -> None:
    servicer, recorder = _servicer()
    response = asyncio.run(servicer.check(request, None))
    assert response.status.code in (
        code_pb2.OK,
        code_pb2.PERMISSION_DENIED,
        code_pb2.UNAUTHENTICATED,
    )
    [record] = recorder.records
    if response.status.code == code_pb2.OK:
        assert response.HasField("ok_response")
        headers = {h.header.key: h.header.value for h in response.ok_response.headers}
        assert headers["x-meshward-decision-id"] == record.decision_id
        # An allow always names the policies that allowed it, and no error.
        assert record.reasons
        assert not record.errors
        source = request.attributes.source.principal
        assert source in ("", FRONTEND, f"{SHOP}/orders")
        # Only a verifiable chain (or none) may come with an allow.
        assert request.attributes.source.certificate in ("", _LEAVES[0])
    else:
        assert response.HasField("denied_response")
        assert response.denied_response.status.code in (401, 403)
        body = json.loads(response.denied_response.body)
        assert body["decision_id"] == record.decision_id
