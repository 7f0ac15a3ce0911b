"""The shared decision pipeline on the real engine and the example policies."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from authz.authn.audience import AudiencePolicy
from authz.authn.authenticator import Authenticated, Authenticator
from authz.authn.jwt import JwtPolicy, JwtVerifier
from authz.authn.peer import PeerFacts, PeerPolicy
from authz.authn.trust import TrustBundles, TrustDomainBundle
from authz.engine.bundle import load_bundle
from authz.engine.decider import (
    Decider,
    DecisionRecord,
    EngineHolder,
    Outcome,
    RequestFacts,
)
from authz.engine.evaluation import Engine
from authz.engine.model import ANONYMOUS, AccessRequest, Decision, EntityUid, Identity
from authz.engine.request import build_request
from meshward.clock import FixedClock
from meshward.spiffe import TrustDomain
from tests.support.cli import REPO
from tests.support.tokens import SigningKey, ts

SHOP = "spiffe://meshward.local/ns/shop/sa"
FRONTEND = f"{SHOP}/frontend"
CATALOG = f"{SHOP}/catalog"
NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
KEY = SigningKey("k1")


class Recorder:
    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def observe(self, record: DecisionRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_bundle(REPO / "policies"))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_decider(engine: Engine | None, recorder: Recorder, **kw) -> Decider:
    clock = FixedClock(NOW)
    bundles = TrustBundles.of(
        TrustDomainBundle(TrustDomain("meshward.local"), (), {KEY.kid: KEY.private.public_key()})
    )
    authn = Authenticator(
        clock,
        PeerPolicy(trust_principal=True, trust_bare_principal=True),
        bundles,
        JwtVerifier(JwtPolicy(), bundles),
    )
    holder = EngineHolder(engine, "v1") if engine else EngineHolder()
    return Decider(holder, authn, clock, observers=[recorder], **kw)


def facts(method: str = "GET", principal: str = FRONTEND, **kw) -> RequestFacts:
    return RequestFacts(
        "test", method, kw.pop("path", "/"), host="catalog", peer=PeerFacts(principal=principal),
        destination=CATALOG, **kw,
    )  # fmt: skip


CASES = [
    ("allow", facts(), Outcome.ALLOW),
    ("deny", facts("DELETE"), Outcome.DENY),
    ("anonymous-deny-is-401", facts(principal=""), Outcome.UNAUTHENTICATED),
    ("anonymous-healthz", facts(principal="", path="/healthz"), Outcome.ALLOW),
    ("bad-principal", facts(principal="frontend"), Outcome.UNAUTHENTICATED),
    ("bad-method", facts("GE T"), Outcome.DENY),
    ("unknown-method", facts("BREW"), Outcome.DENY),
    (
        "bad-token",
        facts(headers={"authorization": "Bearer x.y.z"}),
        Outcome.UNAUTHENTICATED,
    ),
]


@pytest.mark.parametrize(
    ("request_facts", "outcome"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_outcomes(engine: Engine, recorder: Recorder, request_facts, outcome) -> None:
    verdict = await make_decider(engine, recorder).decide(request_facts)
    assert verdict.outcome is outcome
    assert verdict.allowed == (outcome is Outcome.ALLOW)
    [record] = recorder.records
    assert record.decision_id == verdict.decision_id
    assert record.outcome == outcome.value
    assert record.decision == ("allow" if outcome is Outcome.ALLOW else "deny")


async def test_record_fields(engine: Engine, recorder: Recorder) -> None:
    verdict = await make_decider(engine, recorder).decide(facts(path="/items"))
    [record] = recorder.records
    assert record.principal == f'Workload::"{FRONTEND}"'
    assert record.action == 'Action::"GET"'
    assert record.resource == f'Service::"{CATALOG}"'
    assert record.reasons == ("frontend-reads-catalog",)
    assert record.version == engine.version
    assert (record.method, record.host, record.path) == ("GET", "catalog", "/items")
    assert record.cache_tier == "none"
    assert record.request is not None
    assert verdict.upstream_headers()[0] == ("x-meshward-principal", record.principal)
    assert record.to_json()["request"] == {"method": "GET", "host": "catalog", "path": "/items"}


async def test_no_policies_yet_is_unavailable_not_forbidden(recorder: Recorder) -> None:
    decider = make_decider(None, recorder)
    verdict = await decider.decide(facts())
    assert verdict.outcome is Outcome.UNAVAILABLE
    assert verdict.decision.errors == ("no_policies",)
    assert not verdict.allowed
    asked = await decider.decide_request(
        AccessRequest(
            Identity(EntityUid("Workload", FRONTEND)), EntityUid("Action", "GET"),
            EntityUid("Service", CATALOG), {},
        )
    )  # fmt: skip
    assert asked.outcome is Outcome.UNAVAILABLE
    assert [r.outcome for r in recorder.records] == ["unavailable", "unavailable"]


class Broken(Engine):
    """A real engine whose evaluation raises."""

    def evaluate(self, request: AccessRequest) -> Decision:
        raise RuntimeError("boom")


async def test_engine_exception_fails_closed(recorder: Recorder) -> None:
    decider = make_decider(None, recorder)
    decider.engines.swap(Broken(load_bundle(REPO / "policies")), "bad")
    verdict = await decider.decide(facts())
    assert verdict.outcome is Outcome.ERROR
    assert verdict.error_body()["error"] == "denied"


async def test_swap_keeps_in_flight_engine(engine: Engine, recorder: Recorder) -> None:
    decider = make_decider(engine, recorder)
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowCache:
        async def get_or_evaluate(self, request, engine_):
            started.set()
            await release.wait()
            return engine_.evaluate(request), "local"

    decider.cache = SlowCache()
    task = asyncio.create_task(decider.decide(facts()))
    await started.wait()
    decider.engines.swap(Broken(load_bundle(REPO / "policies")), "v2")
    release.set()
    verdict = await task
    assert verdict.outcome is Outcome.ALLOW
    assert recorder.records[-1].cache_tier == "local"
    assert recorder.records[-1].version == engine.version


async def test_cancelled_decision_is_still_recorded(engine: Engine, recorder: Recorder) -> None:
    decider = make_decider(engine, recorder)

    class Hang:
        async def get_or_evaluate(self, request, engine_):
            await asyncio.sleep(3600)

    decider.cache = Hang()
    task = asyncio.create_task(decider.decide(facts()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = recorder.records
    assert record.errors == ("cancelled",)
    assert record.decision == "deny"


async def test_observer_failure_does_not_change_decision(
    engine: Engine, recorder: Recorder
) -> None:
    class Failing:
        def observe(self, record: DecisionRecord) -> None:
            raise ValueError("disk full")

    decider = make_decider(engine, recorder)
    decider.observers.insert(0, Failing())
    assert (await decider.decide(facts())).allowed
    assert len(recorder.records) == 1


async def test_jwt_svid_identity_and_context(engine: Engine, recorder: Recorder) -> None:
    token = KEY.sign({"sub": f"{SHOP}/orders", "aud": CATALOG, "exp": ts(NOW) + 60})
    verdict = await make_decider(engine, recorder).decide(
        facts(principal="", headers={"authorization": f"Bearer {token}"})
    )
    assert verdict.allowed
    request = recorder.records[0].request
    assert request is not None
    assert request.identity.expires_at == NOW + dt.timedelta(seconds=60)
    assert request.context["token"]["claims"]["sub"] == f"{SHOP}/orders"
    assert "authorization" not in request.context["http"]["headers"]


def bearer(aud: object) -> dict[str, str]:
    token = KEY.sign({"sub": f"{SHOP}/orders", "aud": aud, "exp": ts(NOW) + 60})
    return {"authorization": f"Bearer {token}"}


async def test_jwt_svid_replayed_to_another_destination_is_refused(
    engine: Engine, recorder: Recorder
) -> None:
    # The catalog received the caller's token and replays it to the payments service.
    payments = f"{SHOP}/payments"
    replay = facts(principal="", headers=bearer(CATALOG))
    replay = RequestFacts(
        replay.adapter, "GET", "/", host="payments", headers=replay.headers, destination=payments
    )
    verdict = await make_decider(engine, recorder).decide(replay)
    assert verdict.outcome is Outcome.UNAUTHENTICATED
    assert verdict.decision.errors == ("authn:wrong_audience",)
    assert recorder.records[-1].request is None  # nothing was evaluated


@pytest.mark.parametrize(
    ("aud", "aliases", "any_destination", "outcome"),
    [
        ([CATALOG], {}, (), Outcome.ALLOW),
        (["other", CATALOG], {}, (), Outcome.ALLOW),
        ("catalog-api", {CATALOG: ["catalog-api"]}, (), Outcome.ALLOW),
        ("catalog-api", {f"{SHOP}/payments": ["catalog-api"]}, (), Outcome.UNAUTHENTICATED),
        ("meshward", {}, (), Outcome.UNAUTHENTICATED),
        ("meshward", {}, ("meshward",), Outcome.ALLOW),
    ],
    ids=["own-id", "one-of-several", "alias", "alias-of-another", "mesh-wide", "mesh-opt-in"],
)
async def test_jwt_svid_audience_binding(
    engine: Engine, recorder: Recorder, aud, aliases, any_destination, outcome
) -> None:
    decider = make_decider(engine, recorder)
    decider.authenticator.audience = AudiencePolicy.build(aliases, any_destination)
    verdict = await decider.decide(facts(principal="", headers=bearer(aud)))
    assert verdict.outcome is outcome


def test_build_request_context_and_resource() -> None:
    f = RequestFacts(
        "test",
        "post",
        "/pkg.Svc/Do",
        host="api.example:8443",
        query="a=1",
        headers={
            "content-type": "application/grpc",
            "x-forwarded-client-cert": "URI=x",
            "x-a": "b",
        },
    )
    request = build_request(f, Authenticated(ANONYMOUS))
    assert request.action == EntityUid("Action", "POST")
    assert request.resource == EntityUid("Service", "api.example")
    assert request.context["grpc"] == {"service": "pkg.Svc", "method": "Do"}
    assert request.context["http"]["headers"] == {"content-type": "application/grpc", "x-a": "b"}
    assert request.context["http"]["query"] == "a=1"
    assert "peer" not in request.context
    by_service = build_request(
        RequestFacts("t", "GET", "/", service="orders", destination="not-spiffe"),
        Authenticated(ANONYMOUS),
    )
    assert by_service.resource == EntityUid("Service", "orders")
