"""A running PDP follows its ``--trust-bundle`` file as the CA rotates keys."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx

from ca.issuance import issue_jwt_svid
from ca.service import Caller, CertificateAuthority
from meshward.clock import FixedClock, SystemClock
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId, TrustDomain
from meshward.spiffe_bundle import SpiffeBundle
from tests.support.ca import in_process_ca
from tests.support.pdp import TRUST_DOMAIN, PdpProcess, pdp_process
from tests.support.tokens import SigningKey
from tests.support.wait import eventually

ORDERS = "spiffe://meshward.local/ns/shop/sa/orders"


def _status(pdp: PdpProcess, token: str) -> int:
    response = httpx.get(
        f"{pdp.http_url}/ext_authz/items",
        headers={"x-meshward-destination": "shop", "authorization": f"Bearer {token}"},
    )
    return response.status_code


def _write_bundle(pdp: PdpProcess, *keys: SigningKey) -> None:
    bundle = SpiffeBundle(
        TrustDomain(TRUST_DOMAIN),
        (pdp.pki.root.cert,),
        {key.kid: key.private.public_key() for key in keys},
    )
    # The way the CA writes it: a new file renamed over the old one.
    path = pdp.workdir / "bundle.json"
    staged = path.with_suffix(".tmp")
    staged.write_bytes(bundle.to_json())
    staged.replace(path)


def test_new_jwt_key_is_accepted_after_the_bundle_file_changes(tmp_path: Path) -> None:
    with pdp_process(tmp_path, pdp_settings={"trust_bundle_poll_seconds": 0.2}) as pdp:
        claims = {"sub": ORDERS, "aud": "shop", "exp": int(time.time()) + 300}
        old_token = pdp.svid_key.sign(claims)
        rotated = SigningKey("svid-key-2")
        new_token = rotated.sign(claims)
        assert _status(pdp, old_token) != 401
        assert _status(pdp, new_token) == 401

        # prepare: the next key is published beside the current one.
        _write_bundle(pdp, pdp.svid_key, rotated)
        eventually(
            lambda: _status(pdp, new_token) != 401,
            30.0,
            0.1,
            "_status(pdp, new_token) != 401",
            pdp.output,
        )
        assert _status(pdp, old_token) != 401

        # A corrupt file: the last good bundle stays in force, and the log says why.
        (pdp.workdir / "bundle.json").write_text("{not json")
        time.sleep(0.5)
        assert _status(pdp, new_token) != 401
        assert _status(pdp, old_token) != 401
        eventually(
            lambda: "not reloaded" in pdp.output(),
            30.0,
            0.1,
            "'not reloaded' in pdp.output()",
            pdp.output,
        )
        # retire: the old key leaves the bundle and its tokens are refused.
        _write_bundle(pdp, rotated)
        eventually(
            lambda: _status(pdp, old_token) == 401,
            30.0,
            0.1,
            "_status(pdp, old_token) == 401",
            pdp.output,
        )
        assert _status(pdp, new_token) != 401


def _publish(pdp: PdpProcess, ca: CertificateAuthority) -> None:
    """What ``meshward ca serve`` does after a rotation: rewrite bundle.json."""
    path = pdp.workdir / "bundle.json"
    staged = path.with_suffix(".tmp")
    staged.write_bytes(ca.authority.bundle().to_json())
    staged.replace(path)


def test_follows_a_real_ca_rotation(tmp_path: Path) -> None:
    clock = FixedClock(SystemClock().now())
    ca = in_process_ca(tmp_path / "ca", clock, CaSettings(trust_domain=TRUST_DOMAIN))
    orders = SpiffeId.parse(ORDERS)
    ttl = dt.timedelta(minutes=5)
    with pdp_process(tmp_path / "pdp", pdp_settings={"trust_bundle_poll_seconds": 0.2}) as pdp:
        _publish(pdp, ca)
        current = issue_jwt_svid(orders, ["shop"], ca.authority.active, clock.now(), ttl)
        eventually(
            lambda: _status(pdp, current.token) != 401,
            30.0,
            0.1,
            "_status(pdp, current.token) != 401",
            pdp.output,
        )
        # prepare: the CA publishes the next JWT key; until the file changes, it is unknown.
        ca.rotate_prepare(Caller(address="test"))
        upcoming = ca.authority.next
        assert upcoming is not None
        following = issue_jwt_svid(orders, ["shop"], upcoming, clock.now(), ttl)
        assert following.kid != current.kid
        assert _status(pdp, following.token) == 401
        _publish(pdp, ca)
        eventually(
            lambda: _status(pdp, following.token) != 401,
            30.0,
            0.1,
            "_status(pdp, following.token) != 401",
            pdp.output,
        )
        assert _status(pdp, current.token) != 401
