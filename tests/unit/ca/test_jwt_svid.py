"""JWT-SVIDs, checked by the independent py-spiffe package against our bundle."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from spiffe import JwtBundle, JwtSvid
from spiffe import TrustDomain as PyTrustDomain

from ca.errors import BadRequest
from ca.service import Caller
from meshward.clock import FixedClock, SystemClock
from meshward.spiffe import SpiffeId
from meshward.spiffe_bundle import JWT_SVID_USE
from tests.support.ca import in_process_ca, register

WORKLOAD = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web")


def _py_jwt_bundle(doc: dict) -> JwtBundle:  # type: ignore[type-arg]
    jwt_only = {"keys": [k for k in doc["keys"] if k["use"] == JWT_SVID_USE]}
    return JwtBundle.parse(PyTrustDomain("example.org"), json.dumps(jwt_only).encode())


def test_jwt_svid_validates_with_py_spiffe(tmp_path: Path) -> None:
    # py-spiffe checks expiry against the real time, so the CA runs at "now" here.
    clock = FixedClock(SystemClock().now())
    ca = in_process_ca(tmp_path, clock)
    register(ca, WORKLOAD)
    issued = ca.issue_jwt(["svc-a", "svc-b"], None, Caller(peer_id=WORKLOAD))
    bundle = _py_jwt_bundle(ca.authority.bundle().to_jwks())
    svid = JwtSvid.parse_and_validate(issued.token, bundle, {"svc-a"})
    assert str(svid.spiffe_id) == str(WORKLOAD)
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "ES256" and header["kid"] == ca.authority.active.jwt_kid
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300
    assert claims["aud"] == ["svc-a", "svc-b"]


@pytest.mark.parametrize("audience", [[], "", [""], [1], ["a"] * 17, None, {"a": 1}])
def test_bad_audience(tmp_path: Path, audience: object) -> None:
    ca = in_process_ca(tmp_path)
    with pytest.raises(BadRequest) as err:
        ca.issue_jwt(audience, None, Caller(peer_id=WORKLOAD))
    assert err.value.code == "bad_audience"
    assert ca.store.list_audit()[-1].result == "bad_audience"
