"""A replaced engine is taken apart in the background, only once nothing uses it."""

from __future__ import annotations

import gc
import time
import weakref

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.engine.retire import retire
from tests.support.cli import REPO

SHOP = "spiffe://meshward.local/ns/shop/sa"
REQUEST = AccessRequest(
    Identity(EntityUid("Workload", f"{SHOP}/frontend")),
    EntityUid("Action", "GET"),
    EntityUid("Service", f"{SHOP}/catalog"),
    {"peer": {"spiffe_id": f"{SHOP}/frontend", "trust_domain": "meshward.local"}},
)


SCOPE = (
    (REQUEST.principal, frozenset({REQUEST.principal})),
    (REQUEST.action, frozenset({REQUEST.action, EntityUid("Action", "read")})),
    (REQUEST.resource, frozenset({REQUEST.resource})),
)


def test_a_retired_engine_serves_while_held_then_is_freed() -> None:
    engine = Engine(load_bundle(REPO / "policies"))
    assert engine.evaluate(REQUEST).allowed
    gone = weakref.ref(engine)
    retire(engine, grace=10, poll=0.01)
    time.sleep(0.2)
    # Still held here (an in-flight check): untouched, still deciding.
    assert engine.evaluate(REQUEST).allowed
    index = engine._index
    assert index.candidates(*SCOPE)
    del engine
    deadline = time.monotonic() + 10
    while gone() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    gc.collect()
    assert gone() is None
    assert index.candidates(*SCOPE) == ()  # taken apart, not just dropped


def test_retire_ignores_nothing_and_plain_evaluators() -> None:
    retire(None)
    retire(object())  # no dispose(): left to be freed normally
